"""The egress policy of containers: which destinations outside the host they may reach.

By default a container on a bridge network reaches the internet but none of
the private, shared (CGNAT) or link-local ranges (the host's LAN, other hosts
of the pool, the panel's Redis and database, cloud metadata at
169.254.169.254). The host itself is closed by the firewall's input chain.
An operator can allow-list ranges per tenant; the list is stored in
``<root>/networks/.egress.json`` as ``{tenant: [cidr, ...]}``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
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


def split_families(cidrs: Sequence[str]) -> tuple[list[str], list[str]]:
    """``cidrs`` split into (IPv4, IPv6) ranges."""
    v4 = [c for c in cidrs if ":" not in c]
    return v4, [c for c in cidrs if ":" in c]


class AllowLists:
    """Per-tenant allow-lists in one JSON file (callers hold the network lock while changing it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> dict[str, tuple[str, ...]]:
        """Every tenant's allow-list (tenants without one are absent)."""
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            return {}
        return {str(t): tuple(str(c) for c in cidrs) for t, cidrs in data.items() if cidrs}

    def get(self, tenant: str) -> tuple[str, ...]:
        """``tenant``'s allow-list (empty: the default policy)."""
        return self.all().get(tenant, ())

    def write(self, lists: dict[str, tuple[str, ...]]) -> None:
        """Replace the whole file (atomically); empty lists are dropped."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {t: list(c) for t, c in sorted(lists.items()) if c})
