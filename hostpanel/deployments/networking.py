"""Which replicas are on a tenant network, where they run and at which addresses.

An app is on a network when its release names it (``Release.networks``); during
a roll its replicas may run two releases, so membership is read per replica.
The agents (agent/reconcile.py) and the API and pages read it from here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hostpanel.deployments.models import Replica
from hostpanel.networks.models import Network


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
