"""The egress policy of containers: which destinations outside the host they may reach.

By default a container on a bridge network reaches the internet but none of
the private, shared (CGNAT) or link-local ranges (the host's LAN, other hosts
of the pool, the panel's Redis and database, cloud metadata at
169.254.169.254). The host itself is closed by the firewall's input chain.
An operator can allow-list ranges per tenant; the lists are stored in
``<root>/networks/.egress.json`` as ``{tenant: [cidr, ...]}``.

Machines of the control plane and the pool can have public addresses too:
the operator (the host agent, from the panel's records) names them as
*protected* hosts, which containers reach only on the ports listed for them
(other tenants' published ports), whatever a tenant's allow-list says;
stored in ``<root>/networks/.egress-protected.json`` as
``{address: ["8080/tcp", ...]}``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from engine.errors import InvalidSpec
from engine.fsutil import atomic_write_json, read_json

#: IPv4 destinations a container may not reach unless its tenant's allow-list says so.
DENIED_V4: tuple[str, ...] = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
#: IPv6 destinations a container may not reach unless its tenant's allow-list says so.
DENIED_V6: tuple[str, ...] = ("fc00::/7", "fe80::/10")
MAX_ALLOW_ENTRIES = 64
MAX_PROTECTED_HOSTS = 1024
MAX_OPEN_PORTS = 4096
PROTOCOLS = ("tcp", "udp")


def parse_allow_list(cidrs: Iterable[str]) -> tuple[str, ...]:
    """Validate and normalise an allow-list: sorted, unique CIDR ranges (IPv4 first).

    A bare address means that one host (/32 or /128). Raises InvalidSpec naming
    the first bad entry (host bits set, not an address, too many entries).
    """
    networks: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for raw in cidrs:
        text = raw.strip()
        try:
            networks.add(ipaddress.ip_network(text, strict=True))
        except ValueError:
            raise InvalidSpec(
                f"invalid allow-list entry {raw!r}: use a CIDR range such as 10.1.0.0/16 "
                "(no host bits set) or a single address"
            ) from None
    if len(networks) > MAX_ALLOW_ENTRIES:
        raise InvalidSpec(f"an allow-list holds at most {MAX_ALLOW_ENTRIES} ranges; merge some of them")
    ordered = sorted(networks, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return tuple(str(n) for n in ordered)


def parse_protected(entries: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Validate and normalise protected hosts: {address: sorted unique "PORT/PROTO" it keeps open}.

    Raises InvalidSpec naming the first bad address or port.
    """
    if len(entries) > MAX_PROTECTED_HOSTS:
        raise InvalidSpec(f"at most {MAX_PROTECTED_HOSTS} protected hosts")
    result: dict[str, tuple[str, ...]] = {}
    for raw, ports in entries.items():
        try:
            address = str(ipaddress.ip_address(raw.strip()))
        except ValueError:
            raise InvalidSpec(f"invalid protected host {raw!r}: use an IPv4 or IPv6 address") from None
        opened = {_parse_port(address, p) for p in ports}
        if len(opened) > MAX_OPEN_PORTS:
            raise InvalidSpec(f"protected host {address}: at most {MAX_OPEN_PORTS} open ports")
        result[address] = tuple(f"{n}/{proto}" for n, proto in sorted(opened, key=lambda x: (x[1], x[0])))
    return dict(sorted(result.items()))


def _parse_port(address: str, text: str) -> tuple[int, str]:
    number, _, proto = text.strip().partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 1 <= int(number) <= 65535 or proto not in PROTOCOLS:
        raise InvalidSpec(
            f"invalid open port {text!r} for protected host {address}: use PORT/tcp or PORT/udp (1-65535)"
        )
    return int(number), proto


def split_families(cidrs: Sequence[str]) -> tuple[list[str], list[str]]:
    """``cidrs`` split into (IPv4, IPv6) ranges."""
    v4 = [c for c in cidrs if ":" not in c]
    return v4, [c for c in cidrs if ":" in c]


class ListsFile:
    """``{key: [text, ...]}`` in one JSON file: allow-lists by tenant, or protected hosts' open ports.

    Callers hold the network lock while changing it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> dict[str, tuple[str, ...]]:
        """Every key's list."""
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            return {}
        return {str(k): tuple(str(v) for v in values) for k, values in data.items()}

    def get(self, key: str) -> tuple[str, ...]:
        """``key``'s list (empty if none)."""
        return self.all().get(key, ())

    def write(self, lists: Mapping[str, Sequence[str]], *, keep_empty: bool = False) -> None:
        """Replace the whole file (atomically); empty lists are dropped unless ``keep_empty``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {k: list(v) for k, v in sorted(lists.items()) if v or keep_empty})
