"""Which host this process is the agent of, its engine, and the engine steps its reconcile shares.

The agent holds no database (issue 15): it learns what to run from the panel's internal API
(:mod:`hostpanel.agent.remote`) and acts on its own engine with the helpers here. Each container
it makes carries labels naming its tenant, replica and spec (:mod:`hostpanel.deployments.desired`),
so a retried or repeated reconcile adopts what exists instead of making duplicates.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from engine.engine import Engine
from engine.errors import ContainerNotFound, EngineError
from engine.networks.egress import parse_allow_list
from engine.runtime.model import Container
from hostpanel.agent.credentials import InternalClient
from hostpanel.deployments import desired
from hostpanel.hosts import fencing

log = logging.getLogger(__name__)

LABEL_TENANT = desired.LABEL_TENANT
LABEL_REPLICA = desired.LABEL_REPLICA
LABEL_VOLUME = "org.hostpanel.volume"
LABEL_SPEC = desired.LABEL_SPEC  # digest of what the container was made from

ENV_NAME = "HOSTPANEL_AGENT_NAME"
ENV_ROOT = "HOSTPANEL_AGENT_ENGINE_ROOT"
ENV_INSTANCE = "HOSTPANEL_AGENT_INSTANCE"

READY_PROBE_SECONDS = 0.3  # between readiness probes of a new replica without a health check
READY_PROBE_TIMEOUT = 1.0  # for one readiness probe's connect


@dataclass(frozen=True)
class AgentConfig:
    """Which host this process is the agent of, and its engine."""

    name: str
    engine_root: str
    instance: str

    @classmethod
    def from_env(cls) -> AgentConfig | None:
        """The config :meth:`export` put in this process's environment (None outside an agent)."""
        name = os.environ.get(ENV_NAME)
        if not name:
            return None
        return cls(
            name=name,
            engine_root=os.environ.get(ENV_ROOT) or str(settings.HOSTPANEL_ENGINE_ROOT),
            instance=os.environ.get(ENV_INSTANCE) or settings.HOSTPANEL_ENGINE_INSTANCE,
        )

    def export(self) -> None:
        """Put the config in the environment, where tasks in this process find it."""
        os.environ[ENV_NAME] = self.name
        os.environ[ENV_ROOT] = self.engine_root
        os.environ[ENV_INSTANCE] = self.instance


@functools.cache
def engine_for(root: str, instance: str) -> Engine:
    """This host's engine (one per process), which refuses to run a tenant's container without
    its quota (tenants/limits.py)."""
    engine = Engine(root=Path(root), instance=instance)
    engine.require_tenant_limits()
    return engine


@dataclass
class ReconcileReport:
    """What one reconcile did (logged; tests read it)."""

    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retry_in: float | None = None  # seconds until a back-off ends

    def wait(self, seconds: float) -> None:
        """Ask for the next reconcile within ``seconds`` (the soonest of all asked wins)."""
        self.retry_in = seconds if self.retry_in is None else min(self.retry_in, seconds)


def apply_protected_hosts(engine: Engine, host_name: str, wanted: dict[str, list[str]]) -> None:
    """Give the engine the protected hosts (:func:`desired.protected_hosts`) when they changed."""
    setter = getattr(engine, "set_egress_protected", None)
    if setter is None:
        return
    try:
        current = engine.egress_protected()
        if {a: sorted(p) for a, p in current.items()} != wanted:
            setter(wanted)
            log.info("protected hosts on host %s: %s", host_name, wanted)
    except EngineError as exc:
        log.warning("host %s: cannot apply the protected hosts: %s", host_name, exc)


def apply_tenant_egress(engine: Engine, host_name: str, allow: dict[str, list[str]]) -> None:
    """Give the engine each tenant's egress allow-list, before any of the tenant's containers start.

    If the engine refuses, the default policy (no private ranges) stays in force.
    """

    setter = getattr(engine, "set_tenant_egress_allow", None)
    if setter is None:
        return
    for slug, entries in allow.items():
        try:
            wanted = parse_allow_list(entries)
            if engine.tenant_egress_allow(slug) != wanted:
                setter(slug, wanted)
                log.info("tenant %s: egress allow-list %s applied on host %s", slug, list(wanted), host_name)
        except EngineError as exc:
            log.warning("tenant %s: cannot apply its egress allow-list on host %s: %s", slug, host_name, exc)


def remove_container(engine: Engine, container: Container, report: ReconcileReport) -> bool:
    """Remove ``container`` (noted in ``report``); False if it was gone already."""
    try:
        engine.remove(container.id, force=True)
    except ContainerNotFound:
        return False
    report.removed.append(container.name)
    return True


def fence(engine: Engine, client: InternalClient) -> list[str]:
    """Beat through the panel's internal API and remove at once the containers the answer fences
    (fencing.py): replicas moved off this host while it was cut off, or placed on it anew.
    Returns their names."""
    containers = {c.labels[LABEL_REPLICA]: c for c in engine.list(all=True) if LABEL_REPLICA in c.labels}
    running = {rid: fencing.label_generation(c.labels) for rid, c in containers.items()}
    removed = []
    fenced = [str(rid) for rid in client.heartbeat(running).get("fence", [])]
    for replica_id in (rid for rid in fenced if rid in containers):
        container = containers[replica_id]
        try:
            engine.remove(container.id, force=True)
        except ContainerNotFound:
            continue  # a reconcile removed it meanwhile
        log.warning("fenced: removed %s (replica %s is placed elsewhere or anew)", container.name, replica_id)
        removed.append(container.name)
    return removed
