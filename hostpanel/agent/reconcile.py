"""The host agent's side: turn the desired replicas of this host into engine containers.

Runs inside the host agent (a Celery worker started by ``manage.py hostagent``),
which has database access in this single-machine setup (README). Each
container carries labels naming its replica and release, and a deterministic
name (``<tenant>-<app>-<index>``), so a retried or repeated reconcile never
makes duplicates: it adopts what exists, removes what is extra, starts what is
missing and restarts crashed containers by their restart policy with
exponential back-off.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from engine.engine import Engine
from engine.errors import Conflict as EngineConflict
from engine.errors import ContainerNotFound, EngineError, ImageNotFound, VolumeNotFound
from engine.images.namespace import namespace_of
from engine.images.reference import normalize_tag
from engine.networks.egress import parse_allow_list
from engine.runtime.model import Container, ContainerSpec
from hostpanel.agent import host_secrets, overlays, probes, restarts
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.agent.remote_images import pull_image
from hostpanel.agent.restarts import backoff_delay as backoff_delay  # its home before restarts.py
from hostpanel.agent.usage import sample as usage_sample
from hostpanel.deployments import desired, rollout
from hostpanel.deployments.models import App, Release, Replica
from hostpanel.errors import InvalidRequest, ServiceError
from hostpanel.hosts import dispatch, fencing, lifecycle
from hostpanel.hosts.models import Host
from hostpanel.hosts.services import heartbeat
from hostpanel.images.services import archive_for
from hostpanel.registry.services import agent_pull_token, pull_source
from hostpanel.secrets.sealing import SealError
from hostpanel.secrets.services import secret_values
from hostpanel.tenants.limits import write_all_tenant_limits
from hostpanel.tenants.models import Quota, Tenant
from hostpanel.usage.services import record_sample, sampled_tenant_ids
from hostpanel.volumes.models import Volume

log = logging.getLogger(__name__)

LABEL_TENANT = desired.LABEL_TENANT
LABEL_APP = desired.LABEL_APP
LABEL_REPLICA = desired.LABEL_REPLICA
LABEL_RELEASE = desired.LABEL_RELEASE
LABEL_VOLUME = "org.hostpanel.volume"
LABEL_SPEC = desired.LABEL_SPEC  # digest of what the container was made from

ENV_NAME = "HOSTPANEL_AGENT_NAME"
ENV_ROOT = "HOSTPANEL_AGENT_ENGINE_ROOT"
ENV_INSTANCE = "HOSTPANEL_AGENT_INSTANCE"


@dataclass(frozen=True)
class AgentConfig:
    """Which host this process is the agent of, and its engine."""

    name: str
    engine_root: str
    instance: str

    @classmethod
    def from_env(cls) -> AgentConfig | None:
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
    engine = Engine(root=Path(root), instance=instance)
    engine.require_tenant_limits()  # nothing of a tenant runs without its quota (tenants/limits.py)
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
    left_networks: set[int] = field(default_factory=set)  # tenant networks a removed container was on

    def wait(self, seconds: float) -> None:
        self.retry_in = seconds if self.retry_in is None else min(self.retry_in, seconds)


def reconcile(engine: Engine, host: Host) -> ReconcileReport:
    """Make the engine run exactly the replicas placed on ``host``, each as its release says."""
    report = ReconcileReport()
    replicas = {
        str(r.pk): r
        for r in Replica.objects.filter(host=host).select_related("app", "app__tenant", "release")
    }
    # every tenant's quota sits on this host before anything of it runs here (builds and execs too)
    write_all_tenant_limits(engine)
    actual: dict[str, Container] = {}
    for container in engine.list(all=True):
        replica_id = container.labels.get(LABEL_REPLICA)
        if replica_id is None:
            continue  # not ours (an operator's `hpctl run`)
        placed = {replica_id: replicas[replica_id].generation} if replica_id in replicas else {}
        current = fencing.is_current(placed, replica_id, fencing.label_generation(container.labels))
        if not current or replica_id in actual:  # moved away, placed anew (fencing.py), or a twin
            _remove(engine, container, report)
        else:
            actual[replica_id] = container
    apply_protected_hosts(engine, host.name, desired.protected_hosts(host))
    apply_tenant_egress(engine, host.name, tenant_egress(list(replicas.values())))
    out_of_service = lifecycle.out_of_service(host.lifecycle)
    for replica_id, replica in replicas.items():
        try:
            _reconcile_one(engine, replica, actual.get(replica_id), report, out_of_service=out_of_service)
        except (EngineError, ServiceError) as exc:
            log.warning("replica %s: %s", replica.container_name, exc)
            report.failed.append(replica.container_name)
            _report(replica, state=Replica.State.FAILED, message=str(exc))
    _reconcile_networks(engine, host, list(replicas.values()), report)
    if hasattr(engine, "volume_list"):
        report.removed += remove_deleted_volumes(engine)
    if rollout.advance_all(sorted({r.app_id for r in replicas.values()})):
        report.wait(ROLL_PASS_SECONDS)  # a roll of an app here goes on: come back soon
    return report


ROLL_PASS_SECONDS = 0.3  # how soon a reconcile comes back while an app of its host rolls


def _reconcile_networks(engine: Engine, host: Host, replicas: list[Replica], report: ReconcileReport) -> None:
    """Tenant networks (overlays.py): report this host's members' addresses; where they changed (or a
    member left), tell the other hosts of those networks at once; keep this host's networks in sync."""
    if not hasattr(engine, "network_ensure_overlay"):
        return  # an engine without networks (unit tests' fakes)
    changed = overlays.report_addresses(engine, host, replicas) | report.left_networks
    for other in overlays.hosts_to_tell(changed, host):
        try:
            dispatch.send_sync_networks(other.pk, other.queue, sorted(changed))
        except Exception:  # the broker is down: the other agents' periodic reconcile catches up
            log.exception("could not tell host %s about networks %s", other.name, sorted(changed))
    overlays.sync_networks(engine, host, overlays.local_networks(replicas) | changed)
    report.removed += overlays.remove_deleted_networks(engine)


def _reconcile_one(
    engine: Engine,
    replica: Replica,
    container: Container | None,
    report: ReconcileReport,
    *,
    out_of_service: bool = False,
) -> None:
    app = replica.app
    if container is not None and container.labels.get(LABEL_SPEC) != spec_digest(
        replica.release, replica.ports
    ):
        if container.is_running and app.state == App.State.RUNNING and not _claim_update(replica):
            report.wait(1.0)  # another replica of the app is being replaced: one at a time
            return
        _remove(engine, container, report)  # made from a different spec: replace it
        container = None
    if app.state == App.State.STOPPED or replica.stop_requested or out_of_service:
        if container is not None and container.is_running:
            container = engine.stop(container.id)
            report.stopped.append(container.name)
        why = {"message": "its host is evacuated (out of service)"} if out_of_service else {}
        _report(replica, container, state=Replica.State.STOPPED, **why)
        return
    if container is None:
        container = _run(engine, replica)
        report.started.append(container.name)
        _report(
            replica,
            container,
            state=Replica.State.RUNNING,
            restart_count=0,
            crash_streak=0,
            restart_generation=app.restart_generation,
            health="",
            health_failures=0,
            health_checked_at=None,
            restart_requested=False,  # a new container is as good as a restarted one
            ready=False,
        )
        return
    if app.restart_generation > replica.restart_generation or _claim_restart(replica):
        container = engine.restart(container.id) if container.is_running else engine.start(container.id)
        report.restarted.append(container.name)
        _report(
            replica,
            container,
            state=Replica.State.RUNNING,
            restart_generation=app.restart_generation,
            ready=False,
            health="",
        )
        return
    if container.is_running:
        if replica.release.health_check:
            _check_health(engine, replica, container, report)
        elif replica.release.http_port is not None and not replica.ready:
            _check_ready(engine, replica, container, report)
        else:
            _report(replica, container, state=Replica.State.RUNNING)
        return
    if container.status == "created" or replica.state in (Replica.State.STOPPED, Replica.State.STARTING):
        try:
            container = engine.start(container.id)  # created, or stopped on request and now wanted again
        except EngineError:
            if container.status != "created":
                raise
            _remove(engine, container, report)  # a create that was interrupted: make it anew
            container = _run(engine, replica)
            report.started.append(container.name)
        _report(replica, container, state=Replica.State.RUNNING, ready=False, health="")
        return
    _after_exit(engine, replica, container, report)


def _claim_restart(replica: Replica) -> bool:
    """A restart of this one container was asked for: take the request (:func:`desired.claim_restart`)."""
    return replica.restart_requested and desired.claim_restart(replica)


UPDATE_CLAIM_SECONDS = desired.UPDATE_CLAIM_SECONDS


def _claim_update(replica: Replica) -> bool:
    """Rolling replacement: claim the right to replace this replica's running container
    (:func:`desired.claim_update`)."""
    if not desired.claim_update(replica):
        return False
    replica.state = Replica.State.UPDATING  # so the report after the new container writes "running"
    return True


def _after_exit(engine: Engine, replica: Replica, container: Container, report: ReconcileReport) -> None:
    """A container that stopped by itself: restart it by policy, after its back-off
    (:func:`restarts.after_exit`)."""
    release = replica.release
    now = timezone.now()
    decision = restarts.after_exit(
        container,
        release.restart_policy,
        release.restart_max_retries,
        replica.restart_count,
        replica.crash_streak,
        replica.next_restart_at,
        now,
    )
    if decision.action == "exited":
        _report(replica, container, state=Replica.State.EXITED)
        return
    if decision.action == "backoff":
        assert decision.due is not None
        _report(replica, container, state=Replica.State.BACKOFF, next_restart_at=decision.due)
        report.wait((decision.due - now).total_seconds())
        return
    container = engine.start(container.id)
    report.restarted.append(container.name)
    _report(
        replica,
        container,
        state=Replica.State.RUNNING,
        restart_count=decision.restart_count,
        crash_streak=decision.streak,
        next_restart_at=None,
        ready=False,
        health="",
    )


def _check_health(engine: Engine, replica: Replica, container: Container, report: ReconcileReport) -> None:
    """Act on the release's health check: submit it when due, restart after ``retries`` failures.

    The probe itself runs in the probe pool (hostpanel/agent/probes.py), never
    here: this only submits it and comes back one timeout later for its
    result. The first check runs one interval after the container started. A
    container that failed ``retries`` checks in a row is restarted (unless its
    restart policy is ``no``), counted as a restart.
    """
    hc = probes.HealthCheck.parse(replica.release.health_check or {})
    now = timezone.now()
    step = probes.health_step(
        hc,
        replica.health,
        replica.health_failures,
        replica.health_checked_at,
        replica.release.restart_policy,
        now,
    )
    if step.action == "start":
        _report(replica, container, state=Replica.State.RUNNING, health="starting", health_checked_at=now)
        report.wait(step.wait)
        return
    if step.action == "restart":
        container = engine.restart(container.id)
        report.restarted.append(container.name)
        _report(
            replica,
            container,
            state=Replica.State.RUNNING,
            health="starting",
            health_failures=0,
            health_checked_at=now,
            ready=False,
            restart_count=replica.restart_count + 1,
            message=step.message,
        )
        report.wait(step.wait)
        return
    _report(replica, container, state=Replica.State.RUNNING, message=step.message)
    if step.action == "wait":
        report.wait(step.wait)
    elif probes.submit_probe(engine, replica, container, hc):
        report.wait(hc.timeout)  # come back for the result
    else:
        report.wait(min(hc.timeout, 1.0))  # its previous probe still runs, or its tenant's share is in use


READY_PROBE_SECONDS = 0.3  # between readiness probes of a new replica without a health check
READY_PROBE_TIMEOUT = 1.0  # for one readiness probe's connect


def _check_ready(engine: Engine, replica: Replica, container: Container, report: ReconcileReport) -> None:
    """The readiness gate of a replica serving HTTP without a health check: a TCP connect to its
    ``http_port`` from the container's side, in the probe pool; it joins the rotation once one
    succeeds (hostpanel/deployments/rotation.py)."""
    _report(replica, container, state=Replica.State.RUNNING)
    port = replica.release.http_port
    assert port is not None
    probes.submit_readiness(engine, replica, container, port, timeout=READY_PROBE_TIMEOUT)
    report.wait(READY_PROBE_SECONDS)


def _run(engine: Engine, replica: Replica) -> Container:
    """Run the replica's container; adopt one of the same name that is already ours."""
    spec = build_spec(replica)
    _ensure_image(engine, spec.image, spec.tenant)
    _ensure_volumes(engine, replica)
    if spec.networks and replica.host is not None:
        overlays.prepare(engine, replica.host, replica)
    try:
        return engine.run(spec)
    except EngineConflict:
        try:
            existing = engine.get(replica.container_name)
        except ContainerNotFound:
            # The name is held by a create that was interrupted (agent killed): free it, retry.
            _release_stale_name(engine, replica.container_name)
            return engine.run(spec)
        if existing.labels.get(LABEL_REPLICA) != str(replica.pk):
            raise  # someone else's container holds the name: never touch it
        return existing if existing.is_running else engine.start(existing.id)


def _release_stale_name(engine: Engine, name: str) -> None:
    """WORKAROUND until the engine recovers interrupted creates itself (reported in issue 5).

    A create killed between reserving the name and saving the record leaves the
    name reserved for a container that does not exist; only such a name is freed.
    """
    store = engine.containers.store
    path = store.paths.names / name
    try:
        cid = path.read_text().strip()
    except FileNotFoundError:
        return
    if cid and not (store.directory(cid) / "container.json").exists():
        log.warning("container name %s was held by an interrupted create (%s); freeing it", name, cid[:12])
        store.release_name(name, cid)


def spec_digest(release: Release, ports: list[dict[str, Any]]) -> str:
    """The spec label a container of ``release`` with host ``ports`` carries on this host."""
    return desired.host_digest(desired.release_digest(release, ports), bool(release.secrets))


def _ensure_volumes(engine: Engine, replica: Replica) -> None:
    """Create the replica's volumes on this host (with their size caps) the first time they are used."""

    names = [v["name"] for v in replica.release.volumes]
    if not names:
        return
    tenant = replica.app.tenant
    for volume in Volume.objects.filter(tenant=tenant, name__in=names).select_related("tenant"):
        try:
            engine.volume(volume.engine_name)
        except VolumeNotFound:
            engine.volume_create(
                volume.engine_name,
                tenant=tenant.slug,
                size=volume.size_bytes,
                labels={LABEL_VOLUME: str(volume.pk), LABEL_TENANT: tenant.slug},
            )


def remove_deleted_volumes(engine: Engine) -> list[str]:
    """Remove this host's panel volumes whose record was deleted (unless a container still uses one)."""

    ours = {v.name: v for v in engine.volume_list() if LABEL_VOLUME in getattr(v, "labels", {})}
    if not ours:
        return []
    alive = {str(pk) for pk in Volume.objects.values_list("pk", flat=True)}
    removed = []
    for name, volume in ours.items():
        if volume.labels[LABEL_VOLUME] not in alive:
            try:
                engine.volume_remove(name)
            except EngineError as exc:
                log.warning("volume %s: not removed: %s", name, exc)
                continue
            removed.append(name)
    return removed


def _ensure_image(engine: Engine, reference: str, tenant: str) -> None:
    """Bring the image into this host's engine the first time a container of ``tenant`` needs it.

    A tenant image the panel's registry holds (``<tenant>/<name>:<tag>``) is
    pulled from it with this agent's pull token, fetching only the layers the
    host lacks; otherwise (or if that pull fails) an uploaded archive is imported.
    Both store only that one image, under exactly ``reference`` (tags inside an
    archive are ignored): as ``tenant``'s in its namespace, else as a base image (the
    panel lets a tenant run only its own images and base images, like ``library/...``).
    """
    owner = tenant if normalize_tag(reference).startswith(namespace_of(tenant)) else None
    try:
        engine.image(reference, tenant=tenant)
        return
    except ImageNotFound:
        source = pull_source(reference)
        agent = AgentConfig.from_env()
        archive = archive_for(reference)
        if (source is None or agent is None) and archive is None:
            raise
    if source is not None and agent is not None:
        try:
            pull_image(engine, reference, owner, asdict(source), agent_pull_token(agent.name))
        except EngineError as exc:
            if archive is None:
                raise
            log.warning("pulling %s from the registry failed (%s); importing %s", reference, exc, archive)
        else:
            return
    assert archive is not None
    log.info("importing image %s from %s", reference, archive)
    engine.images.import_archive(archive, reference, tenant=owner)


def _secret_values(replica: Replica, names: list[str]) -> dict[str, str]:
    """The plain values of a replica's secrets, only in this process's memory. An enrolled host
    receives them sealed to its own key from the internal API (:mod:`hostpanel.agent.host_secrets`);
    a host that is not enrolled (tests, `make run`) still decrypts them from the database."""
    directory = host_secrets.state_dir()
    if directory is None:
        return secret_values(replica.app.tenant, names)
    try:
        return host_secrets.fetch(directory, replica.pk, names)
    except (PanelError, SealError) as exc:
        raise InvalidRequest(f"secrets of replica {replica.pk}: {exc}") from exc


def build_spec(replica: Replica) -> ContainerSpec:
    """The engine spec of a replica (:func:`hostpanel.deployments.desired.container_spec`, the one
    an enrolled agent makes from the internal API's document). Secrets are opened (enrolled host)
    or decrypted here, on the host, only now; the digest (with the secrets' versions) is taken
    first, so a value replaced meanwhile only means one more replacement, never a container stuck
    on an older value."""
    doc = desired.replica_document(replica)
    names = list(dict.fromkeys(s["name"] for s in doc["secrets"]))
    return desired.container_spec(doc, _secret_values(replica, names) if names else {})


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


def tenant_egress(replicas: list[Replica]) -> dict[str, list[str]]:
    """{tenant slug: its egress allow-list} of the tenants of ``replicas``."""
    tenant_ids = {r.app.tenant_id for r in replicas}
    quotas = Quota.objects.filter(tenant_id__in=tenant_ids).select_related("tenant")
    return {q.tenant.slug: list(q.egress_allow or []) for q in quotas}


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


def _remove(engine: Engine, container: Container, report: ReconcileReport) -> None:
    if not remove_container(engine, container, report):
        return
    if overlays.LABEL_NETWORKS in container.labels:
        tenant_id = Tenant.objects.filter(slug=container.tenant).values_list("pk", flat=True).first()
        if tenant_id is not None:
            report.left_networks |= overlays.network_ids(container, tenant_id)


def _report(replica: Replica, container: Container | None = None, **values: object) -> None:
    """Write the actual state back (only what changed), unless the replica moved or changed
    release meanwhile."""
    if container is not None:
        values.setdefault("engine_id", container.id)
        values.setdefault("exit_code", container.exit_code)
        values.setdefault("started_at", restarts.parse_time(container.started_at))
        values.setdefault(
            "finished_at", restarts.parse_time(container.finished_at) if not container.is_running else None
        )
        if "message" not in values:
            values["message"] = "out of memory" if container.status == "oom-killed" else ""
    changed = {key: value for key, value in values.items() if getattr(replica, key) != value}
    if not changed:
        return  # a steady state costs no write
    changed["updated_at"] = timezone.now()
    Replica.objects.filter(
        pk=replica.pk, host_id=replica.host_id, release_id=replica.release_id, generation=replica.generation
    ).update(**changed)


def collect_usage(engine: Engine, host: Host) -> int:
    """Sample the engine's usage counters and add each tenant's share to its hourly rows, and
    each app's (its containers', by their app label) to the app's; every tenant's storage here.

    Tenants with replicas here, and those collected here before (so a tenant
    whose app moved away is billed up to its last sample: usage.services.sampled_tenant_ids).
    The sample is hostpanel/agent/usage.py's, written with usage.services.record_sample, as an
    agent without the database has it written through the internal API. Returns how many tenants.
    """
    slugs = Tenant.objects.filter(pk__in=sampled_tenant_ids(host)).values_list("slug", flat=True)
    everyone = Tenant.objects.values_list("slug", flat=True)
    return record_sample(host, usage_sample(engine, list(slugs), list(everyone)))


def report_tenant_storage(engine: Engine, host: Host) -> None:
    """Record each tenant's container files (its disk here) and build cache on this host."""
    record_sample(host, usage_sample(engine, (), list(Tenant.objects.values_list("slug", flat=True))))


def fence(engine: Engine, host_id: int, client: InternalClient | None = None) -> list[str]:
    """Beat for ``host_id`` (through the panel's internal API with ``client``, an enrolled agent's)
    and remove at once the containers the answer fences (fencing.py): replicas moved off this
    host while it was cut off, or placed on it anew. Returns their names."""
    containers = {c.labels[LABEL_REPLICA]: c for c in engine.list(all=True) if LABEL_REPLICA in c.labels}
    running = {rid: fencing.label_generation(c.labels) for rid, c in containers.items()}
    removed = []
    if client is not None:
        fenced = [str(rid) for rid in client.heartbeat(running).get("fence", [])]
    else:
        fenced = heartbeat(host_id, running)
    for replica_id in (rid for rid in fenced if rid in containers):
        container = containers[replica_id]
        try:
            engine.remove(container.id, force=True)
        except ContainerNotFound:
            continue  # a reconcile removed it meanwhile
        log.warning("fenced: removed %s (replica %s is placed elsewhere or anew)", container.name, replica_id)
        removed.append(container.name)
    return removed
