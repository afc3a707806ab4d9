"""The host agent's reconcile (it holds no database): the internal API's document in, states out.

``GET /internal/v1/host/desired`` names what this host should run (its replicas' container specs,
its tenants' limits and egress allow-lists, its protected hosts:
:mod:`hostpanel.deployments.desired`); this applies it to the engine with the panel's spec builder
(:func:`desired.container_spec`), opens the secrets sealed to this host's
key (:mod:`hostpanel.agent.host_secrets`) and reports each replica's state with ``POST
/internal/v1/host/report``. Containers of replicas not in the document, or of another
generation (moved away or placed anew: fencing.py), are removed.

An image the engine lacks is pulled from the panel's registry, or its tenant's uploaded archive is
fetched from the panel and imported (:mod:`hostpanel.agent.remote_images`).

A running container whose spec changed is replaced once ``POST /internal/v1/host/claim`` grants
it (one replica of an app at a time, across hosts).

Restart back-off, health checks and readiness are decided here
(:func:`restarts.after_exit`, :func:`probes.health_step`, :func:`probes.probe_outcome`); what they
decide from, a replica's restart streak, its due restart and its health, is kept on the panel's
replica row. The document brings it (each entry's
``recorded``: what this agent last reported) and the report writes the new values back (only
those that changed). Not a state file on the host: the panel shows the back-off and the health
(and the edge routes by ``ready``) from the row anyway, a second copy could only disagree with
it, and a replica placed anew starts clean there. A probe runs in the probe pool, off this
loop; its result waits in this process (:data:`_probed`) for the next reconcile, which counts it
only for the same container and only if no check was recorded since it was submitted. If a
report is lost, its values are made again from the container (its finish time gives the same
due restart) or the probe runs again.

Tenant networks: the document carries this host's engine networks as the panel computes them
(:func:`networking.overlay_state`: subnet, VNI, this host's slice, peers, the other hosts'
members and their addresses), applied with :func:`overlays.apply_overlay`;
the report carries each replica's addresses (``addresses``), from which the panel gives the
other hosts their remote names at their next reconcile. An engine network none of this host's
replicas joins any more is removed.

A restart asked for on the panel: of the app (its ``restart_generation`` in the document above the
one recorded for the replica: restarted, the new one reported) or of one container (recorded
``restart_requested``: taken with ``POST host/claim`` and ``restart: true`` before restarting, so it
is done once and a request made meanwhile is kept).

Deleted tenants: the document names those this host should purge now (``purge_tenants``: its
pending purges, a failed one again after the resend delay); after the replicas
are reported, each is purged from the engine and the outcomes go to ``POST
/internal/v1/host/purged`` (:func:`tenant_purge.purge_listed`), which clears the host's rows or
keeps the errors. A host that was down catches up at its next reconcile;
the ``purge_tenant`` task the panel sends to its queue wakes one at once.

Deleted volumes: each volume entry carries a proof that this host was given it, which labels the
engine volume; after the purges the agent names the panel volumes it holds with their proofs
(``POST /internal/v1/host/volumes``) and removes those the panel says were deleted, never one a
container still uses (:mod:`hostpanel.agent.deleted_volumes`). Deleting a volume sends every host
that is up a reconcile; a host that was down removes its copy at its next one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone

from engine.engine import Engine
from engine.errors import Conflict as EngineConflict
from engine.errors import ContainerNotFound, EngineError, VolumeNotFound
from engine.runtime.model import Container
from hostpanel.agent import (
    deleted_volumes,
    host_secrets,
    overlays,
    probes,
    remote_images,
    restarts,
    tenant_purge,
)
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.agent.host_engine import (
    LABEL_REPLICA,
    LABEL_SPEC,
    LABEL_TENANT,
    LABEL_VOLUME,
    READY_PROBE_SECONDS,
    READY_PROBE_TIMEOUT,
    ReconcileReport,
    apply_protected_hosts,
    apply_tenant_egress,
    remove_container,
)
from hostpanel.deployments import desired
from hostpanel.hosts import fencing
from hostpanel.secrets.sealing import SealError
from hostpanel.tenants.limits import apply_tenant_limits

log = logging.getLogger(__name__)

MESSAGE_MAX = 2000  # what the report takes (hostpanel/deployments/internal.py)
_lock = threading.Lock()  # one reconcile at a time (the worker's task and the periodic one)


class NotServed(Exception):
    """A replica needs what its host's document does not give (a network, a volume): reported failed."""


def reconcile(engine: Engine, client: InternalClient, state_dir: Path) -> ReconcileReport:
    """Fetch this host's desired state, make the engine run it, report the replicas' states, then
    purge the deleted tenants it names and report those (:func:`tenant_purge.purge_listed`), and
    remove the deleted volumes it holds (:func:`deleted_volumes.remove_deleted`)."""
    with _lock:
        doc = client.desired()
        report = ReconcileReport()
        states = apply(engine, client, doc, state_dir, report)
        if states:
            client.report(states)
        tenant_purge.purge_listed(engine, client, doc["host"], doc["purge_tenants"])
        if hasattr(engine, "volume_list"):
            report.removed += deleted_volumes.remove_deleted(engine, client, doc)
        return report


def apply(
    engine: Engine, client: InternalClient, doc: dict[str, Any], state_dir: Path, report: ReconcileReport
) -> list[dict[str, Any]]:
    """Apply the document ``doc`` to ``engine``; the replicas' states to report."""
    wanted = {str(e["replica"]): e for e in doc["replicas"]}
    placed = {rid: int(e["generation"]) for rid, e in wanted.items()}
    actual: dict[str, Container] = {}
    for container in engine.list(all=True):
        replica_id = container.labels.get(LABEL_REPLICA)
        if replica_id is None:
            continue  # not ours (an operator's `hpctl run`)
        current = fencing.is_current(placed, replica_id, fencing.label_generation(container.labels))
        if not current or replica_id in actual:
            remove_container(engine, container, report)
        else:
            actual[replica_id] = container
    for slug, tenant in doc["tenants"].items():
        try:
            apply_tenant_limits(engine, slug, tenant["limits"])
        except EngineError as exc:
            log.warning("tenant %s: cannot write its quota on this host: %s", slug, exc)
    apply_protected_hosts(engine, doc["host"], doc["protected"])
    apply_tenant_egress(engine, doc["host"], {s: t["egress_allow"] for s, t in doc["tenants"].items()})
    networks = hasattr(engine, "network_ensure_overlay")  # an engine with tenant networks
    if networks:
        _sync_networks(engine, doc["networks"])
    states = []
    for replica_id, entry in wanted.items():
        try:
            state = _apply_one(engine, client, doc, entry, actual.get(replica_id), state_dir, report)
        except (EngineError, PanelError, SealError, NotServed) as exc:
            log.warning("replica %s: %s", entry["name"], exc)
            report.failed.append(entry["name"])
            state = {"state": "failed", "message": str(exc)[:MESSAGE_MAX]}
        if networks:
            state |= _addresses(engine, entry, state.get("engine_id"))
        states.append({"replica": entry["replica"], "generation": entry["generation"], **state})
    if networks:
        # an engine network none of its replicas here joins any more (deleted, or its last member gone)
        report.removed += overlays.remove_networks(engine, lambda network: network.name in doc["networks"])
    return states


def _sync_networks(engine: Engine, networks: dict[str, dict[str, Any]]) -> None:
    """Bring this host's engine networks of the document up to date (peers, remote names): those it
    has; a replica's start creates the others (:func:`_prepare_networks`)."""
    for name, state in networks.items():
        if "error" in state:
            continue
        try:
            overlays.apply_overlay(engine, state, create=False)
        except EngineError as exc:
            log.warning("network %s: not synced: %s", name, exc)


def _prepare_networks(engine: Engine, doc: dict[str, Any], entry: dict[str, Any]) -> None:
    """Make the replica's tenant networks ready on this host before its container starts."""
    for join in entry["networks"]:
        state = doc["networks"].get(join["engine_name"])
        if state is None:
            raise NotServed(f"tenant network {join['name']} is not in this host's document")
        if "error" in state:
            raise NotServed(state["error"])
        overlays.apply_overlay(engine, state)


def _addresses(engine: Engine, entry: dict[str, Any], engine_id: str | None) -> dict[str, Any]:
    """The replica's addresses on its tenant networks for the report, if they changed (other hosts'
    members learn them from the panel: their remote names)."""
    found: dict[str, str] = {}
    if engine_id and entry["networks"]:
        with contextlib.suppress(ContainerNotFound):  # removed meanwhile: it has none
            found = overlays.container_addresses(engine.get(engine_id))
    return {} if found == entry["recorded"]["addresses"] else {"addresses": found}


def _apply_one(
    engine: Engine,
    client: InternalClient,
    doc: dict[str, Any],
    entry: dict[str, Any],
    container: Container | None,
    state_dir: Path,
    report: ReconcileReport,
) -> dict[str, Any]:
    recorded = Recorded.of(entry)
    if container is not None and container.labels.get(LABEL_SPEC) != desired.host_digest(
        entry["digest"], entry["boot_bound"]
    ):
        if (
            container.is_running
            and entry["running"]
            and not client.claim(entry["replica"], entry["generation"])
        ):
            report.wait(1.0)  # another replica of the app is being replaced: one at a time
            return _state(container, "running")
        remove_container(engine, container, report)  # made from a different spec: replace it
        container = None
    if not entry["running"] or doc["out_of_service"]:
        if container is not None and container.is_running:
            container = engine.stop(container.id)
            report.stopped.append(container.name)
        message = "its host is evacuated (out of service)" if doc["out_of_service"] else ""
        return _state(container, "stopped", message)
    wanted_restarts = int(entry["restart_generation"])
    if container is None:
        container = _run(engine, client, doc, entry, state_dir)
        report.started.append(container.name)
        if recorded.restart_requested:  # a new container is as good as a restarted one
            client.claim(entry["replica"], entry["generation"], restart=True)
        return _state(container, "running") | recorded.changes(FRESH, restart_generation=wanted_restarts)
    if wanted_restarts > recorded.restart_generation or (
        recorded.restart_requested and client.claim(entry["replica"], entry["generation"], restart=True)
    ):  # a restart of the app, or of this one container, asked for on the panel
        container = engine.restart(container.id) if container.is_running else engine.start(container.id)
        report.restarted.append(container.name)
        return _state(container, "running") | recorded.changes(
            restart_generation=wanted_restarts, ready=False, health=""
        )
    if container.is_running:
        return _running(engine, entry, container, recorded, report)
    if container.status == "created" or recorded.state in ("stopped", "starting"):
        container = engine.start(container.id)  # created, or stopped on request and now wanted again
        report.restarted.append(container.name)
        return _state(container, "running") | recorded.changes(ready=False, health="")
    return _after_exit(engine, entry, container, recorded, report)


# A new container: nothing of its predecessor's restarts or health carries over (as reconcile.py).
FRESH: dict[str, Any] = {
    "restart_count": 0,
    "crash_streak": 0,
    "health": "",
    "health_failures": 0,
    "health_checked_at": None,
    "ready": False,
}


@dataclass(frozen=True)
class Recorded:
    """What the panel records of a replica's restarts and health (the document's ``recorded``: what
    this agent last reported, :func:`desired.recorded_state`)."""

    state: str
    restart_count: int
    crash_streak: int
    next_restart_at: datetime | None
    health: str
    health_failures: int
    health_checked_at: datetime | None
    ready: bool
    restart_generation: int
    restart_requested: bool

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Recorded:
        r = entry["recorded"]
        return cls(
            state=str(r["state"]),
            restart_count=int(r["restart_count"]),
            crash_streak=int(r["crash_streak"]),
            next_restart_at=restarts.parse_time(r["next_restart_at"]),
            health=str(r["health"]),
            health_failures=int(r["health_failures"]),
            health_checked_at=restarts.parse_time(r["health_checked_at"]),
            ready=bool(r["ready"]),
            restart_generation=int(r["restart_generation"]),
            restart_requested=bool(r["restart_requested"]),
        )

    def changes(self, values: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """The report's fields for ``values`` that differ from what is recorded (datetimes as ISO
        8601): a steady state reports no change, and the panel writes none."""
        changed = {}
        for key, value in {**(values or {}), **more}.items():
            if getattr(self, key) != value:
                changed[key] = value.isoformat() if isinstance(value, datetime) else value
        return changed


def _after_exit(
    engine: Engine, entry: dict[str, Any], container: Container, recorded: Recorded, report: ReconcileReport
) -> dict[str, Any]:
    """A container that stopped by itself: restart it by policy after its back-off
    (:func:`restarts.after_exit`), the streak kept with the panel."""
    now = timezone.now()
    decision = restarts.after_exit(
        container,
        entry["restart_policy"],
        entry["restart_max_retries"],
        recorded.restart_count,
        recorded.crash_streak,
        recorded.next_restart_at,
        now,
    )
    if decision.action == "exited":
        return _state(container, "exited")
    if decision.action == "backoff":
        assert decision.due is not None
        report.wait((decision.due - now).total_seconds())
        return _state(container, "backoff") | recorded.changes(next_restart_at=decision.due)
    container = engine.start(container.id)
    report.restarted.append(container.name)
    return _state(container, "running") | recorded.changes(
        restart_count=decision.restart_count,
        crash_streak=decision.streak,
        next_restart_at=None,
        ready=False,
        health="",
    )


def _running(
    engine: Engine, entry: dict[str, Any], container: Container, recorded: Recorded, report: ReconcileReport
) -> dict[str, Any]:
    """A running container: its health check, else (serving HTTP) its readiness gate."""
    if entry["health_check"]:
        return _check_health(engine, entry, container, recorded, report)
    if entry["http_port"] is not None and not recorded.ready:
        return _check_ready(engine, entry, container, recorded, report)
    return _state(container, "running")


@dataclass(frozen=True)
class Probed:
    """A probe's result, kept in this process until the next reconcile reports it."""

    container_id: str
    since: datetime | None  # the replica's health_checked_at when it was submitted
    checked_at: datetime
    result: probes.ProbeResult


_probed: dict[int, Probed] = {}  # replica id -> its last probe's result, not yet reported
_probed_lock = threading.Lock()


def _take_probed(replica_id: int, container: Container, since: datetime | None) -> Probed | None:
    """The probe submitted for this container while ``since`` was recorded, if it is done (one of
    an older container, or from before a check was recorded since, is dropped)."""
    with _probed_lock:
        probed = _probed.pop(replica_id, None)
    if probed is None or probed.container_id != container.id or probed.since != since:
        return None
    return probed


def _submit(
    engine: Engine,
    entry: dict[str, Any],
    container: Container,
    hc: probes.HealthCheck,
    since: datetime | None,
    checked_at: datetime,
) -> bool:
    """Run ``hc`` against ``container`` in the probe pool; its result waits in this process."""
    replica_id = int(entry["replica"])

    def job() -> None:
        result = probes.run_probe(engine, container, hc)
        with _probed_lock:
            _probed[replica_id] = Probed(container.id, since, checked_at, result)

    return probes.runner().submit(entry["tenant"], replica_id, job)


def _check_health(
    engine: Engine, entry: dict[str, Any], container: Container, recorded: Recorded, report: ReconcileReport
) -> dict[str, Any]:
    """The release's health check (:func:`probes.health_step`): the
    last probe's result is counted first (:func:`probes.probe_outcome`), then the next step taken."""
    hc = probes.HealthCheck.parse(entry["health_check"])
    now = timezone.now()
    health, failures, checked_at = recorded.health, recorded.health_failures, recorded.health_checked_at
    values: dict[str, Any] = {}
    probed = _take_probed(int(entry["replica"]), container, checked_at)
    if probed is not None:
        outcome = probes.probe_outcome(hc, failures, probed.result)
        if not probed.result.healthy:
            log.info("health check of %s failed: %s", container.name, probed.result.reason)
        health, failures, checked_at = outcome.health or health, outcome.failures, probed.checked_at
        values = {"health": health, "health_failures": failures, "health_checked_at": checked_at}
        if outcome.ready:
            values["ready"] = True
    step = probes.health_step(hc, health, failures, checked_at, entry["restart_policy"], now)
    if step.action == "start":
        report.wait(step.wait)
        return _state(container, "running") | recorded.changes(health="starting", health_checked_at=now)
    if step.action == "restart":
        container = engine.restart(container.id)
        report.restarted.append(container.name)
        report.wait(step.wait)
        return _state(container, "running", step.message) | recorded.changes(
            health="starting",
            health_failures=0,
            health_checked_at=now,
            ready=False,
            restart_count=recorded.restart_count + 1,
        )
    if step.action == "wait":
        report.wait(step.wait)
    elif _submit(engine, entry, container, hc, checked_at, now):
        report.wait(hc.timeout)  # come back for the result
    else:
        report.wait(min(hc.timeout, 1.0))  # its previous probe still runs, or its tenant's share is in use
    return _state(container, "running", step.message) | recorded.changes(values)


def _check_ready(
    engine: Engine, entry: dict[str, Any], container: Container, recorded: Recorded, report: ReconcileReport
) -> dict[str, Any]:
    """The readiness gate of a replica serving HTTP without a health check (a TCP connect to its
    ``http_port`` from the container's side, in the probe pool); it is reported ready once one
    succeeded, and the edge routes to it from then on."""
    probed = _take_probed(int(entry["replica"]), container, None)
    if probed is not None and probed.result.healthy:
        return _state(container, "running") | recorded.changes(ready=True)
    hc = probes.readiness_check(int(entry["http_port"]), timeout=READY_PROBE_TIMEOUT)
    _submit(engine, entry, container, hc, None, timezone.now())
    report.wait(READY_PROBE_SECONDS)
    return _state(container, "running")


def _state(container: Container | None, state: str, message: str = "") -> dict[str, Any]:
    """A report entry's state fields for ``container`` (None: there is none)."""
    if container is None:
        return {"state": state, "message": message}
    if not message and container.status == "oom-killed":
        message = "out of memory"
    return {
        "state": state,
        "engine_id": container.id,
        "exit_code": container.exit_code,
        "started_at": container.started_at or None,
        "finished_at": None if container.is_running else container.finished_at or None,
        "message": message,
    }


def _run(
    engine: Engine, client: InternalClient, doc: dict[str, Any], entry: dict[str, Any], state_dir: Path
) -> Container:
    if entry["networks"]:
        _prepare_networks(engine, doc, entry)
    names = list(dict.fromkeys(s["name"] for s in entry["secrets"]))
    values = host_secrets.fetch(state_dir, entry["replica"], names) if names else {}
    spec = desired.container_spec(entry, values)
    remote_images.ensure_image(engine, client, doc, spec.image, spec.tenant, state_dir)
    _ensure_volumes(engine, entry)
    try:
        return engine.run(spec)
    except EngineConflict:
        existing = engine.get(entry["name"])
        if existing.labels.get(LABEL_REPLICA) != str(entry["replica"]):
            raise  # someone else's container holds the name: never touch it
        return existing if existing.is_running else engine.start(existing.id)


def _ensure_volumes(engine: Engine, entry: dict[str, Any]) -> None:
    for volume in entry["volumes"]:
        if volume["id"] is None:
            raise NotServed(f"volume {volume['source']} is gone; deploy without it")
        try:
            engine.volume(volume["source"])
        except VolumeNotFound:
            engine.volume_create(
                volume["source"],
                tenant=entry["tenant"],
                size=volume["size"],
                labels={
                    LABEL_VOLUME: str(volume["id"]),
                    deleted_volumes.LABEL_VOLUME_PROOF: volume["proof"],
                    LABEL_TENANT: entry["tenant"],
                },
            )
