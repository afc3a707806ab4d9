"""The reconcile of an enrolled agent without the database: the internal API's document in, states out.

``GET /internal/v1/host/desired`` names what this host should run (its replicas' container specs,
its tenants' limits and egress allow-lists, its protected hosts:
:mod:`hostpanel.deployments.desired`); this applies it to the engine with the same spec builder
as the database path (:func:`desired.container_spec`), opens the secrets sealed to this host's
key (:mod:`hostpanel.agent.host_secrets`) and reports each replica's state with ``POST
/internal/v1/host/report``. Containers of replicas not in the document, or of another
generation (moved away or placed anew: fencing.py), are removed.

A running container whose spec changed is replaced once ``POST /internal/v1/host/claim`` grants
it (one replica of an app at a time, across hosts). Not yet served this way (the database path
does them): tenant networks, health checks and readiness probes, restart back-off.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from engine.engine import Engine
from engine.errors import Conflict as EngineConflict
from engine.errors import EngineError, ImageNotFound, VolumeNotFound
from engine.images.namespace import namespace_of
from engine.images.reference import normalize_tag
from engine.runtime.model import Container
from hostpanel.agent import host_secrets
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.agent.reconcile import (
    LABEL_REPLICA,
    LABEL_SPEC,
    LABEL_TENANT,
    LABEL_VOLUME,
    ReconcileReport,
    apply_protected_hosts,
    apply_tenant_egress,
    pull_image,
    remove_container,
)
from hostpanel.deployments import desired
from hostpanel.hosts import fencing
from hostpanel.secrets.sealing import SealError
from hostpanel.tenants.limits import apply_tenant_limits

log = logging.getLogger(__name__)

MESSAGE_MAX = 2000  # what the report takes (hostpanel/deployments/internal.py)
RESTARTED_BY_POLICY = ("always", "unless-stopped")
_lock = threading.Lock()  # one reconcile at a time (the worker's task and the periodic one)


class NotServed(Exception):
    """A replica needs what an agent without the database cannot do yet."""


def reconcile(engine: Engine, client: InternalClient, state_dir: Path) -> ReconcileReport:
    """Fetch this host's desired state, make the engine run it, report the replicas' states."""
    with _lock:
        doc = client.desired()
        report = ReconcileReport()
        states = apply(engine, client, doc, state_dir, report)
        if states:
            client.report(states)
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
    states = []
    for replica_id, entry in wanted.items():
        try:
            state = _apply_one(engine, client, doc, entry, actual.get(replica_id), state_dir, report)
        except (EngineError, PanelError, SealError, NotServed) as exc:
            log.warning("replica %s: %s", entry["name"], exc)
            report.failed.append(entry["name"])
            state = {"state": "failed", "message": str(exc)[:MESSAGE_MAX]}
        states.append({"replica": entry["replica"], "generation": entry["generation"], **state})
    return states


def _apply_one(
    engine: Engine,
    client: InternalClient,
    doc: dict[str, Any],
    entry: dict[str, Any],
    container: Container | None,
    state_dir: Path,
    report: ReconcileReport,
) -> dict[str, Any]:
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
    if container is None:
        container = _run(engine, doc, entry, state_dir)
        report.started.append(container.name)
        return _state(container, "running")
    if container.is_running:
        return _state(container, "running")
    failed = container.exit_code != 0 or container.status == "oom-killed"
    policy = entry["restart_policy"]
    if container.status == "created" or policy in RESTARTED_BY_POLICY or (policy == "on-failure" and failed):
        container = engine.start(container.id)
        report.restarted.append(container.name)
        return _state(container, "running")
    return _state(container, "exited")


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


def _run(engine: Engine, doc: dict[str, Any], entry: dict[str, Any], state_dir: Path) -> Container:
    if entry["networks"]:
        raise NotServed("tenant networks are not served to agents without the database yet")
    names = list(dict.fromkeys(s["name"] for s in entry["secrets"]))
    values = host_secrets.fetch(state_dir, entry["replica"], names) if names else {}
    spec = desired.container_spec(entry, values)
    _ensure_image(engine, doc, spec.image, spec.tenant)
    _ensure_volumes(engine, entry)
    try:
        return engine.run(spec)
    except EngineConflict:
        existing = engine.get(entry["name"])
        if existing.labels.get(LABEL_REPLICA) != str(entry["replica"]):
            raise  # someone else's container holds the name: never touch it
        return existing if existing.is_running else engine.start(existing.id)


def _ensure_image(engine: Engine, doc: dict[str, Any], reference: str, tenant: str) -> None:
    """The image is here, or pulled from the panel's registry with the document's pull token."""
    try:
        engine.image(reference, tenant=tenant)
        return
    except ImageNotFound:
        source = doc["images"].get(reference)
        if source is None:
            raise
    owner = tenant if normalize_tag(reference).startswith(namespace_of(tenant)) else None
    pull_image(engine, reference, owner, source, doc["pull_token"])


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
                labels={LABEL_VOLUME: str(volume["id"]), LABEL_TENANT: entry["tenant"]},
            )
