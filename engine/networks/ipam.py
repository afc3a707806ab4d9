"""IP address management (pure): parse subnets, pick a free subnet from a pool, pick a free address.

The on-disk bookkeeping lives in :mod:`engine.networks.manager`; these
functions only decide, so they are unit-tested without root.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable

from engine.errors import Conflict, InvalidSpec, QuotaExceeded

DEFAULT_POOL = "10.89.0.0/16"
DEFAULT_PREFIX = 24
MIN_PREFIX = 8
MAX_PREFIX = 29  # a /29 still holds a gateway and five containers


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """``text`` as an IPv4 network in CIDR form; InvalidSpec if malformed, has host bits or is unusable."""
    if "/" not in text:
        raise InvalidSpec(f"invalid subnet {text!r}: use CIDR form like 10.89.3.0/24")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidSpec(f"invalid subnet {text!r}: {exc}; use CIDR form like 10.89.3.0/24") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidSpec(f"invalid subnet {text!r}: only IPv4 subnets are supported")
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise InvalidSpec(
            f"invalid subnet {text!r}: the prefix length must be between /{MIN_PREFIX} and /{MAX_PREFIX}"
        )
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified or net.is_reserved:
        raise InvalidSpec(f"invalid subnet {text!r}: loopback, link-local, multicast or reserved range")
    return net


def check_no_overlap(
    subnet: ipaddress.IPv4Network, taken: Iterable[tuple[str, ipaddress.IPv4Network]]
) -> None:
    """Raise Conflict if ``subnet`` overlaps one of ``taken`` (pairs of owner description and network)."""
    for owner, other in taken:
        if subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} overlaps {other} ({owner}); choose another --subnet")


def allocate_subnet(
    pool: ipaddress.IPv4Network, prefixlen: int, taken: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    """The first /``prefixlen`` of ``pool`` that overlaps nothing in ``taken``; QuotaExceeded if none."""
    if prefixlen < pool.prefixlen:
        raise InvalidSpec(f"the subnet pool {pool} is smaller than one /{prefixlen}")
    used = [t for t in taken if t.overlaps(pool)]
    for candidate in pool.subnets(new_prefix=prefixlen):
        if not any(candidate.overlaps(t) for t in used):
            return candidate
    raise QuotaExceeded(
        f"no free /{prefixlen} left in the subnet pool {pool}; remove unused networks or pass --subnet"
    )


def gateway_of(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The gateway address of a network: its first host address."""
    return subnet.network_address + 1


def allocate_address(
    subnet: ipaddress.IPv4Network,
    used: Iterable[str],
    after: str | None = None,
    within: ipaddress.IPv4Network | None = None,
) -> ipaddress.IPv4Address:
    """A free address of ``subnet``: not the gateway, the broadcast address or in ``used``.

    Without ``after``, the lowest one; with it, the first one above ``after``,
    wrapping around (round robin, so a just-released address is reused last).
    ``within`` limits the choice to a part of the subnet (an overlay host's share).
    Raises QuotaExceeded when the subnet is full.
    """
    taken = {ipaddress.IPv4Address(u) for u in used}
    taken.add(gateway_of(subnet))
    hosts = [h for h in subnet.hosts() if within is None or h in within]
    start = 0
    if after is not None:
        with contextlib.suppress(ValueError):
            start = hosts.index(ipaddress.IPv4Address(after)) + 1
    for host in hosts[start:] + hosts[:start]:
        if host not in taken:
            return host
    raise QuotaExceeded(
        f"the subnet {subnet} has no free address left; remove containers or use a bigger one"
    )
