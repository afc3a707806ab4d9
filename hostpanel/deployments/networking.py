"""Which replicas are on a tenant network, where they run and at which addresses.

An app is on a network when its release names it (``Release.networks``); during
a roll its replicas may run two releases, so membership is read per replica.
The desired documents of the hosts and the API and pages read it from here.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hostpanel.deployments.models import Replica
from hostpanel.errors import InvalidRequest
from hostpanel.hosts.models import Host
from hostpanel.networks.models import Network
from hostpanel.networks.services import host_range

log = logging.getLogger(__name__)

LABEL_NETWORK = "org.hostpanel.network"  # on an engine network: the panel network's id


def join_of(joins: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The entry of ``Release.networks`` for network ``name``, if the release joins it."""
    return next((j for j in joins or [] if j.get("name") == name), None)


def member_replicas(network: Network) -> list[Replica]:
    """The tenant's replicas whose release joins ``network`` (placed or not, any state)."""
    replicas = Replica.objects.filter(app__tenant_id=network.tenant_id).select_related(
        "app", "release", "host"
    )
    return [r for r in replicas if join_of(r.release.networks, network.name) is not None]


def member_hosts(network: Network) -> set[int]:
    """Ids of the hosts that have replicas placed on them that join ``network``."""
    return {r.host_id for r in member_replicas(network) if r.host_id is not None}


def names_of(replica: Replica, network_name: str) -> list[str]:
    """What resolves to ``replica`` on the network: its app's name, then the release's aliases."""
    join = join_of(replica.release.networks, network_name) or {}
    return list(dict.fromkeys([replica.app.name, *join.get("aliases", [])]))


@dataclass
class Member:
    """An app on a network (for the API and the pages)."""

    app: str
    aliases: list[str]
    replicas: list[dict[str, Any]] = field(default_factory=list)


def network_members(network: Network) -> list[Member]:
    """The apps on ``network``, each with its names and its replicas (host, state, address)."""
    members: dict[str, Member] = {}
    for replica in sorted(member_replicas(network), key=lambda r: (r.app.name, r.index)):
        names = names_of(replica, network.name)
        member = members.setdefault(replica.app.name, Member(app=replica.app.name, aliases=names[1:]))
        member.replicas.append(
            {
                "container_name": replica.container_name,
                "host": replica.host.name if replica.host else None,
                "state": replica.state,
                "address": replica.network_addresses.get(network.name),
            }
        )
    return list(members.values())


def addresses_by_host(members: list[Member]) -> dict[str, list[str]]:
    """{host name: the network's addresses given out there}, from :func:`network_members`."""
    found: dict[str, list[str]] = defaultdict(list)
    for member in members:
        for replica in member.replicas:
            if replica["host"] and replica["address"]:
                found[replica["host"]].append(replica["address"])
    return {host: sorted(addresses) for host, addresses in sorted(found.items())}


def _underlay(host: Host) -> str | None:
    """The host's underlay IPv4 address: its ``address``, resolved if it is a name (None if neither)."""
    return _ipv4_of(host.address) if host.address else None


@functools.lru_cache(maxsize=256)
def _ipv4_of(name: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    try:
        found = sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None, socket.AF_INET)})
    except (OSError, UnicodeError):
        log.warning("cannot resolve host address %r to an IPv4 underlay address", name)
        return None
    usable = [a for a in found if not ipaddress.IPv4Address(a).is_loopback]
    return usable[0] if usable else None


def _peers(network: Network, host: Host, members: list[Replica]) -> list[str]:
    """Underlay addresses of the other hosts with members of ``network``.

    InvalidRequest if one of them shares this host's address: such hosts share one network stack
    (several agents on one machine), where one VNI can be carried by one engine only.
    """
    hosts = {r.host for r in members if r.host is not None and r.host_id != host.pk}
    mine = _underlay(host)
    clash = sorted(h.name for h in hosts if mine is not None and _underlay(h) == mine)
    if clash:
        raise InvalidRequest(
            f"tenant network {network.name!r} cannot span host {host.name} and {', '.join(clash)}: "
            f"they share the underlay address {mine} (one network stack); give each host its own address "
            "(manage.py hostagent --address) or run the apps on one of them"
        )
    return sorted({a for h in hosts if (a := _underlay(h)) is not None})


def _remote(network: Network, host: Host, members: list[Replica]) -> list[dict[str, Any]]:
    """The members on other hosts, with the addresses their agents reported."""
    entries = []
    for replica in members:
        if replica.host_id == host.pk:
            continue
        address = replica.network_addresses.get(network.name)
        if address:
            names = names_of(replica, network.name)
            entries.append({"name": replica.container_name, "ip": address, "aliases": names})
    return sorted(entries, key=lambda e: (e["name"], e["ip"]))


def overlay_state(network: Network, host: Host) -> dict[str, Any]:
    """What ``host``'s engine network of ``network`` should be, as plain data: its engine name,
    tenant, subnet, VNI, this host's slice (``ip_range``) and underlay address, the other member
    hosts' underlay addresses (``peers``) and the members there with their reported addresses
    (``remote``). InvalidRequest if another member host shares this host's underlay address."""
    members = member_replicas(network)
    return {
        "id": network.pk,
        "engine_name": network.engine_name,
        "tenant": network.tenant.slug,
        "subnet": network.subnet,
        "vni": network.vni,
        "peers": _peers(network, host, members),
        "underlay_ip": _underlay(host),
        "ip_range": host_range(network, host.pk),
        "remote": _remote(network, host, members),
    }
