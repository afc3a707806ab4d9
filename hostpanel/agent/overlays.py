"""The agent's side of tenant networks: each is an engine overlay network on every host it spans.

A replica that joins tenant network N runs on this host's engine network
``N.engine_name`` (a VXLAN overlay with the panel's subnet and VNI, this host's
slice of the subnet as ``ip_range``, and as peers the underlay addresses of the
other hosts with members of N). The engine writes the names of this host's
members into their /etc/hosts itself; the names of the members on other hosts
are given to it as remote endpoints (their app name and aliases -> their
addresses, as each host's agent reported them in ``Replica.addresses``).

Whenever a host's members of N change (a container started, stopped or removed
here), its agent tells every other host with members of N to sync N
(:func:`sync_networks`, idempotent): peers and remote names are rewritten in
place, nobody is restarted. Each reconcile also syncs this host's networks, so a
lost message is caught up at the next one.

An engine network stays on a host after its last member there went (an empty
bridge and VXLAN port, cheap; the next member reuses it); it goes when the panel
network is deleted (:func:`remove_deleted_networks`) or the tenant is purged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from engine.engine import Engine
from engine.errors import EngineError, NotFound
from engine.networks.model import RemoteEndpoint
from engine.runtime.model import Container
from hostpanel.deployments import desired, networking
from hostpanel.deployments.models import Replica
from hostpanel.deployments.networking import member_replicas
from hostpanel.errors import ServiceError
from hostpanel.hosts.models import Host
from hostpanel.networks.models import Network

log = logging.getLogger(__name__)

LABEL_NETWORK = networking.LABEL_NETWORK
# on a container: the tenant networks it joined, "name=engine name" comma-separated
LABEL_NETWORKS = desired.LABEL_NETWORKS


replica_networks = desired.replica_networks


def container_addresses(container: Container) -> dict[str, str]:
    """{tenant network name: address} of a running container of ours (from its label and attachments)."""
    label = container.labels.get(LABEL_NETWORKS, "")
    if not label or not container.is_running:
        return {}
    by_engine: dict[str, str] = {}
    for part in label.split(","):
        name, sep, engine_name = part.partition("=")
        if sep:
            by_engine[engine_name] = name
    return {
        by_engine[a["network"]]: a["ip_address"]
        for a in container.attachments()
        if a.get("network") in by_engine and a.get("ip_address")
    }


def network_ids(container: Container, tenant_id: int) -> set[int]:
    """Ids of the tenant networks a container of ours joined (by its label)."""
    names = [p.split("=", 1)[0] for p in container.labels.get(LABEL_NETWORKS, "").split(",") if p]
    if not names:
        return set()
    return set(Network.objects.filter(tenant_id=tenant_id, name__in=names).values_list("pk", flat=True))


def ensure_network(engine: Engine, host: Host, network: Network, *, create: bool = True) -> bool:
    """Bring this host's engine network of ``network`` to the panel's state
    (:func:`networking.overlay_state`). With ``create=False`` a network this host does not have is
    left alone. Whether the engine network is here."""
    return apply_overlay(engine, networking.overlay_state(network, host), create=create)


def apply_overlay(engine: Engine, state: dict[str, Any], *, create: bool = True) -> bool:
    """Bring an engine network to ``state`` (:func:`networking.overlay_state`, as plain data: the
    agent with the database makes it from the rows, the one without gets it in its document):
    subnet, VNI, this host's slice, peers and remote names, each written only if it changed. With
    ``create=False`` a network this host does not have is left alone. Whether it is here."""
    name = state["engine_name"]
    try:
        current = engine.network(name)
    except NotFound:
        current = None
        if not create:
            return False
    if current is None or sorted(current.peers) != state["peers"]:
        engine.network_ensure_overlay(
            name,
            tenant=state["tenant"],
            subnet=state["subnet"],
            vni=state["vni"],
            peers=state["peers"],
            underlay_ip=state["underlay_ip"],
            ip_range=state["ip_range"],
            labels={LABEL_NETWORK: str(state["id"])},
        )
    remote = [RemoteEndpoint(e["name"], e["ip"], tuple(e["aliases"])) for e in state["remote"]]
    if current is None or list(engine.networks.remote_endpoints(name)) != remote:
        engine.network_set_remote(name, remote)
        log.info("network %s: %d remote names", name, len(remote))
    return True


def prepare(engine: Engine, host: Host, replica: Replica) -> None:
    """Make the replica's tenant networks ready on this host before its container starts."""
    for network in replica_networks(replica):
        ensure_network(engine, host, network)


def report_addresses(engine: Engine, host: Host, replicas: Iterable[Replica]) -> set[int]:
    """Write each replica's addresses here into ``Replica.addresses`` (only the ones that changed);
    the ids of the tenant networks whose members' addresses changed."""
    replicas = [r for r in replicas if r.release.networks or r.addresses]
    if not replicas:
        return set()
    containers = {c.labels.get("org.hostpanel.replica"): c for c in engine.list(all=True)}
    changed: set[int] = set()
    for replica in replicas:
        container = containers.get(str(replica.pk))
        now = container_addresses(container) if container is not None else {}
        value: dict[str, Any] = {"host": host.pk, "networks": now} if now else {}
        if value == replica.addresses:
            continue
        Replica.objects.filter(pk=replica.pk, host_id=replica.host_id).update(addresses=value)
        names = set(now) | set(replica.network_addresses)
        changed |= set(
            Network.objects.filter(tenant_id=replica.app.tenant_id, name__in=names).values_list(
                "pk", flat=True
            )
        )
    return changed


def sync_networks(engine: Engine, host: Host, ids: Iterable[int]) -> None:
    """Bring this host's engine networks of these tenant networks up to date (those it has)."""
    for network in Network.objects.filter(pk__in=list(ids)).select_related("tenant"):
        try:
            ensure_network(engine, host, network, create=False)
        except (EngineError, ServiceError) as exc:
            log.warning("network %s on %s: not synced: %s", network, host.name, exc)


def local_networks(replicas: Iterable[Replica]) -> set[int]:
    """Ids of the tenant networks the releases of these replicas join."""
    wanted: dict[int, set[str]] = {}
    for r in replicas:
        names = {str(j["name"]) for j in r.release.networks or []}
        if names:
            wanted.setdefault(r.app.tenant_id, set()).update(names)
    ids: set[int] = set()
    for tenant_id, names in wanted.items():
        ids |= set(Network.objects.filter(tenant_id=tenant_id, name__in=names).values_list("pk", flat=True))
    return ids


def hosts_to_tell(ids: Iterable[int], host: Host) -> list[Host]:
    """The other hosts (up) with members of these networks."""
    host_ids: set[int] = set()
    for network in Network.objects.filter(pk__in=list(ids)):
        host_ids |= {r.host_id for r in member_replicas(network) if r.host_id is not None}
    host_ids.discard(host.pk)
    return list(Host.objects.filter(pk__in=host_ids).exclude(state=Host.State.DOWN))


def remove_deleted_networks(engine: Engine) -> list[str]:
    """Remove this host's engine networks whose tenant network was deleted (unless still in use)."""
    if not any(LABEL_NETWORK in n.labels for n in engine.network_list()):
        return []
    alive = {str(pk) for pk in Network.objects.values_list("pk", flat=True)}
    return remove_networks(engine, lambda network: network.labels[LABEL_NETWORK] in alive)


def remove_networks(engine: Engine, keep: Callable[[Any], bool]) -> list[str]:
    """Remove this host's engine networks of tenant networks but those ``keep`` says to keep (and
    those still in use: the engine refuses, logged). Their names."""
    removed = []
    for network in engine.network_list():
        if LABEL_NETWORK not in network.labels or keep(network):
            continue
        try:
            engine.network_remove(network.name)
        except EngineError as exc:
            log.warning("network %s: not removed: %s", network.name, exc)
            continue
        removed.append(network.name)
    return removed
