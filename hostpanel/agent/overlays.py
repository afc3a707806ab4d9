"""The agent's side of tenant networks: each is an engine overlay network on every host it spans.

A replica that joins tenant network N runs on this host's engine network
``N.engine_name`` (a VXLAN overlay with the panel's subnet and VNI, this host's
slice of the subnet as ``ip_range``, and as peers the underlay addresses of the
other hosts with members of N). The engine writes the names of this host's
members into their /etc/hosts itself; the names of the members on other hosts
are given to it as remote endpoints (their app name and aliases -> their
addresses, as each host's agent reported them).

The panel computes each network's state for this host (:func:`networking.overlay_state`) and
sends it in the desired document; every reconcile applies it (:func:`apply_overlay`, idempotent:
peers and remote names are rewritten in place, nobody is restarted) and reports its members'
addresses (:func:`container_addresses`), from which the other hosts learn them at their next
reconcile.

An engine network stays on a host after its last member there went (an empty
bridge and VXLAN port, cheap; the next member reuses it); it goes when none of this host's
replicas joins it any more (:func:`remove_networks`) or the tenant is purged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engine.engine import Engine
from engine.errors import EngineError, NotFound
from engine.networks.model import RemoteEndpoint
from engine.runtime.model import Container
from hostpanel.deployments import desired, networking

log = logging.getLogger(__name__)

LABEL_NETWORK = networking.LABEL_NETWORK
# on a container: the tenant networks it joined, "name=engine name" comma-separated
LABEL_NETWORKS = desired.LABEL_NETWORKS


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


def apply_overlay(engine: Engine, state: dict[str, Any], *, create: bool = True) -> bool:
    """Bring an engine network to ``state`` (:func:`networking.overlay_state`, as plain data: the
    desired document's):
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
