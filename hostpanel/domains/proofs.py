"""Ownership proofs of a custom domain: a DNS TXT record, or an HTTP token answered through our proxy.

No Django here: callers pass the resolver, the proxy's addresses and port, and the expected answer.

- DNS: ``TXT _hostpanel-challenge.<name>`` containing ``hostpanel-verify=<token>`` (for
  ``*.example.com`` the record sits at ``_hostpanel-challenge.example.com``).
- HTTP: ``<name>`` resolves only to addresses of our proxy, and ``GET /.well-known/hostpanel/<token>``
  sent there with ``Host: <name>`` answers the panel's proof for that token. We only ever connect
  to our own proxy's addresses, so a tenant cannot make the panel fetch from anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
from collections.abc import Iterable

import dns.exception
import dns.nameserver
import dns.resolver

TXT_LABEL = "_hostpanel-challenge"
TXT_PREFIX = "hostpanel-verify="
WELL_KNOWN = "/.well-known/hostpanel/"
MAX_BODY = 4096


class ProofFailed(Exception):
    """The proof is not there (yet); the message says what was found and what to do."""


def txt_name(base_name: str) -> str:
    return f"{TXT_LABEL}.{base_name}"


def txt_value(token: str) -> str:
    return f"{TXT_PREFIX}{token}"


def http_path(token: str) -> str:
    return f"{WELL_KNOWN}{token}"


def http_answer(secret: str, name: str, token: str) -> str:
    """What the panel answers at the token's URL: an HMAC of name and token (no echo server fakes it)."""
    message = f"hostpanel-domain:{name}:{token}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_resolver(nameservers: Iterable[str], timeout: float) -> dns.resolver.Resolver:
    """A resolver asking ``host:port`` nameservers (none: the system's /etc/resolv.conf)."""
    servers = [s.strip() for s in nameservers if s.strip()]
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [_nameserver(s) for s in servers]
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def _nameserver(text: str) -> dns.nameserver.Nameserver:
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, raw_port = text.split(":")
        port = int(raw_port)
    return dns.nameserver.Do53Nameserver(host, port)


def check_dns(resolver: dns.resolver.Resolver, base_name: str, token: str) -> None:
    """Pass if the TXT record is there; else ProofFailed saying what DNS answered."""
    where, want = txt_name(base_name), txt_value(token)
    try:
        answer = resolver.resolve(where, "TXT")
        found = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        found = []
    except dns.exception.DNSException as exc:
        raise ProofFailed(
            f"could not look up TXT {where}: {exc.__class__.__name__}; try again later"
        ) from exc
    if want not in found:
        seen = f" (found: {', '.join(found)[:200]})" if found else " (there is no TXT record there)"
        raise ProofFailed(f"add a TXT record {where} with the value {want}, then verify again{seen}")


def resolve_addresses(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """Every A and AAAA address of ``name``; ProofFailed when DNS cannot answer."""
    addresses: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            addresses += [r.to_text() for r in resolver.resolve(name, rdtype)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise ProofFailed(f"could not look up {name}: {exc.__class__.__name__}; try again later") from exc
    return addresses


def check_http(
    resolver: dns.resolver.Resolver,
    name: str,
    token: str,
    expected: str,
    proxy_addresses: Iterable[str],
    port: int,
    timeout: float,
) -> None:
    """Pass if ``name`` points only at our proxy and the token's URL answers ``expected`` there."""
    ours = {ipaddress.ip_address(a) for a in proxy_addresses}
    found = resolve_addresses(resolver, name)
    if not found:
        raise ProofFailed(f"{name} has no A or AAAA record; point it at {_listing(ours)}, then verify again")
    foreign = [a for a in found if ipaddress.ip_address(a) not in ours]
    if foreign:
        raise ProofFailed(
            f"{name} resolves to {', '.join(foreign)}, which is not this platform's proxy; "
            f"point it at {_listing(ours)} (or use the DNS TXT proof), then verify again"
        )
    for address in sorted(set(found)):
        body = _fetch(address, port, name, http_path(token), timeout)
        if not hmac.compare_digest(body, expected.encode()):
            raise ProofFailed(
                f"http://{name}{http_path(token)} did not answer the token through our proxy at "
                f"{address}:{port}; check that nothing in front of it rewrites the request"
            )


def _listing(addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str:
    return ", ".join(sorted(str(a) for a in addresses)) or "this platform's proxy address"


def _fetch(address: str, port: int, name: str, path: str, timeout: float) -> bytes:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": name, "User-Agent": "hostpanel-domain-check"})
        response = connection.getresponse()
        body = response.read(MAX_BODY)
        return body.strip() if response.status == 200 else b""
    except OSError as exc:
        raise ProofFailed(f"could not reach our proxy at {address}:{port} for {name}: {exc}") from exc
    finally:
        connection.close()
