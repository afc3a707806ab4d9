"""A container's /etc/hosts (pure): its own names and every endpoint of each network it is on.

HostPanel runs no DNS server for containers: names are lines of the
container's hosts file, rewritten in place whenever a peer comes or goes
(see engine.networks.manager). An endpoint is a dict with ``name``, ``ip``
and ``aliases`` (and ``hostname`` for the container's own one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LOCALHOST_LINES = ("127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback")


@dataclass(frozen=True)
class HostsSection:
    """What one network contributes: the container's own endpoint on it and everyone else there."""

    own: Mapping[str, Any] | None
    others: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def _spread(own_ip: str) -> Callable[[Mapping[str, Any]], bytes]:
    """The order of the other endpoints' lines in the hosts file of the container at ``own_ip``.

    A resolver answers a name that several lines have (a service's replicas) in file
    order and most clients take the first answer: each client gets its own stable
    order, so clients spread over the replicas, and an unchanged set of endpoints
    keeps the file unchanged.
    """
    return lambda ep: hashlib.blake2s(f"{own_ip}/{ep['ip']}".encode(), digest_size=8).digest()


def _line(ip: str, names: Sequence[str]) -> str:
    return f"{ip}\t{' '.join(dict.fromkeys(n for n in names if n))}"


def merged_hosts_text(hostname: str, sections: Sequence[HostsSection]) -> str:
    """/etc/hosts of a container on the networks of ``sections`` (in the order it joined them).

    localhost first; then the container's own address on each network with its
    name and that network's aliases (the host name on the first one only);
    then each network's other endpoints, local and remote, in an order of this
    container's own (see :func:`_spread`). A name with several addresses
    (replicas) gets one line per address; a name is listed only for the
    networks it is on, so nothing leaks across networks.
    """
    lines = list(LOCALHOST_LINES)
    owns = [s.own for s in sections if s.own is not None]
    if not owns:
        lines.append(f"127.0.1.1\t{hostname}")
    for index, own in enumerate(owns):
        first = [own.get("hostname") or hostname] if index == 0 else []
        lines.append(_line(own["ip"], [*first, own["name"], *own.get("aliases", ())]))
    spread = _spread(owns[0]["ip"] if owns else hostname)
    for section in sections:
        for ep in sorted(section.others, key=spread):
            lines.append(_line(ep["ip"], [ep["name"], *ep.get("aliases", ())]))
    return "\n".join(dict.fromkeys(lines)) + "\n"


def hosts_text(own: Mapping[str, Any] | None, others: Sequence[Mapping[str, Any]], hostname: str) -> str:
    """/etc/hosts of a container on one network (``own`` None: on no network)."""
    return merged_hosts_text(hostname, [HostsSection(own, others)])
