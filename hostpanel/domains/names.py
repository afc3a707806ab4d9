"""Domain names as tenants type them, normalised to one form (lowercase IDNA A-labels, no trailing dot).

Pure functions (no Django): the panel's services, the ``ask`` endpoint and tests share them.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import idna

MAX_NAME = 253
LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
WILDCARD_PREFIX = "*."


class BadName(ValueError):
    """The text is not a DNS name we can route (the message says why and what to do)."""


def _is_ip(text: str) -> bool:
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def normalise(raw: str, *, allow_wildcard: bool = True) -> str:
    """``raw`` as the one spelling we store: lowercase, no trailing dot, IDNA (UTS 46) A-labels.

    Raises BadName for IP addresses, single labels, wildcards other than a leading ``*.``,
    and anything that is not a valid host name.
    """
    if not isinstance(raw, str):
        raise BadName("a domain name is text, like www.example.com")
    text = raw.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise BadName("a domain name is needed, like www.example.com")
    if _is_ip(text) or re.fullmatch(r"[0-9.]+", text):
        raise BadName(f"{raw!r} is an IP address; add a DNS name that points at us instead")
    wildcard = text.startswith(WILDCARD_PREFIX)
    rest = text[len(WILDCARD_PREFIX) :] if wildcard else text
    if "*" in rest:
        raise BadName(f"{raw!r}: '*' may only be the whole first label, as in *.example.com")
    if wildcard and not allow_wildcard:
        raise BadName(f"{raw!r}: wildcards are not allowed here")
    try:
        ascii_name = idna.encode(rest, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise BadName(
            f"{raw!r} is not a valid domain name ({exc}); use letters, digits and '-' in each "
            "dot-separated label, like www.example.com"
        ) from exc
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise BadName(f"{raw!r} is a single label; use a full domain name, like www.example.com")
    bad = [label for label in labels if not LDH_LABEL.match(label)]
    if bad:
        raise BadName(f"{raw!r}: label {bad[0]!r} is not a valid host name label (letters, digits, '-')")
    if labels[-1].isdigit():
        raise BadName(f"{raw!r}: the last label cannot be all digits")
    name = (WILDCARD_PREFIX if wildcard else "") + ascii_name
    if len(name) > MAX_NAME:
        raise BadName(f"{raw!r} is longer than {MAX_NAME} characters")
    return name


def covers(wildcard: str, name: str) -> bool:
    """Whether ``*.example.com`` covers ``name`` (exactly one label more, as in TLS and DNS)."""
    if not wildcard.startswith(WILDCARD_PREFIX):
        return False
    head, _, parent = name.partition(".")
    return bool(head) and head != "*" and parent == wildcard[len(WILDCARD_PREFIX) :]


def is_under(name: str, parent: str) -> bool:
    """Whether ``name`` (or the wildcard's base) is ``parent`` or a name below it."""
    base = name[len(WILDCARD_PREFIX) :] if name.startswith(WILDCARD_PREFIX) else name
    return base == parent or base.endswith("." + parent)


def display(name: str) -> str:
    """The Unicode spelling of a stored name, for people (``xn--bcher-kva.example`` -> ``bücher.example``)."""
    prefix = WILDCARD_PREFIX if name.startswith(WILDCARD_PREFIX) else ""
    try:
        return prefix + idna.decode(name[len(prefix) :])
    except (idna.IDNAError, UnicodeError):
        return name


def lookup_addresses(name: str) -> list[str]:
    """The IP addresses ``name`` resolves to on this machine (the system resolver)."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})
