"""Tasks the host agents run. Thin: they take ids, reload rows and call agent.reconcile."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery import shared_task
from django.db import DatabaseError, OperationalError

from engine.dockerapi.stats import host_memory, sample_to_dict, take_sample
from engine.runtime.model import ALIVE
from engine.runtime.procfs import online_cpus
from hostpanel.agent import archive, host_secrets, overlays, relay, remote, tenant_purge
from hostpanel.agent import reconcile as agent
from hostpanel.agent.credentials import client_for
from hostpanel.agent.credentials import load as load_credentials
from hostpanel.edge.services import publish_routes_after_reconcile
from hostpanel.hosts.models import Host
from hostpanel.logstream.reading import backfill

log = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def reconcile_host(host_id: int) -> None:
    """Make this host's engine match its desired replicas (idempotent, safe to retry)."""
    config = agent.AgentConfig.from_env()
    if _reconciled_enrolled(config):
        return
    host = Host.objects.filter(pk=host_id).first()
    if config is None or host is None or host.name != config.name:
        log.warning(
            "reconcile_host(%s) reached agent %s: not its host, ignored", host_id, config and config.name
        )
        return
    report = agent.reconcile(agent.engine_for(config.engine_root, config.instance), host)
    if report.started or report.restarted or report.removed or report.stopped or report.failed:
        log.info("reconcile %s: %s", host.name, report)
    try:  # replicas started, stopped or changed health: the edge learns (sent only if changed)
        publish_routes_after_reconcile(host)
    except DatabaseError:  # a busy database: the heartbeat's catch-up publishes it shortly
        log.warning("reconcile %s: publishing the routing table failed; the heartbeat retries", host.name)
    if report.retry_in is not None:
        reconcile_host.apply_async(args=[host_id], queue=host.queue, countdown=report.retry_in + 0.05)


def _reconciled_enrolled(config: agent.AgentConfig | None) -> bool:
    """On an enrolled agent, reconcile from the internal API (hostpanel/agent/remote.py: its
    replicas, then the tenant purges its document names) and say True; else False."""
    state_dir = host_secrets.state_dir()
    if config is None or state_dir is None:
        return False
    engine = agent.engine_for(config.engine_root, config.instance)
    done = remote.reconcile(engine, client_for(load_credentials(state_dir)), state_dir)
    if done.started or done.restarted or done.removed or done.stopped or done.failed:
        log.info("reconcile %s: %s", config.name, done)
    return True


@shared_task(acks_late=True, ignore_result=True)
def collect_usage(host_id: int) -> None:
    """Add what each tenant used on this host since the last collection to its hourly usage."""
    config = agent.AgentConfig.from_env()
    host = Host.objects.filter(pk=host_id).first()
    if config is None or host is None or host.name != config.name:
        return
    agent.collect_usage(agent.engine_for(config.engine_root, config.instance), host)


@shared_task(acks_late=True, ignore_result=True, autoretry_for=(OperationalError,), max_retries=5)
def sync_networks(host_id: int, network_ids: list[int]) -> None:
    """Rewrite this host's peers and remote names of these tenant networks (idempotent: a member
    started, moved or went on another host)."""
    config = agent.AgentConfig.from_env()
    host = Host.objects.filter(pk=host_id).first()
    if config is None or host is None or host.name != config.name:
        return
    overlays.sync_networks(agent.engine_for(config.engine_root, config.instance), host, network_ids)


@shared_task(acks_late=True, ignore_result=True)
def purge_tenant(host_id: int, slug: str) -> None:
    """Remove everything this host's engine holds of the deleted tenant ``slug`` (idempotent). An
    enrolled agent reconciles instead: its desired document names the purges it should do now."""
    config = agent.AgentConfig.from_env()
    if _reconciled_enrolled(config):
        return
    host = Host.objects.filter(pk=host_id).first()
    if config is None or host is None or host.name != config.name:
        return
    tenant_purge.purge_tenant(agent.engine_for(config.engine_root, config.instance), host, slug)


@shared_task(acks_late=False)
def container_logs(replica_id: int, tail: int) -> list[dict[str, Any]]:
    """The last ``tail`` log lines of a replica's container on this host."""

    try:
        engine, container = _engine_container(replica_id)
        lines = list(engine.logs(container.id, tail=tail))
    except Exception as exc:  # no container (yet): say so instead of failing the request
        return [{"time": "", "stream": "error", "text": str(exc)}]
    return [{"time": line.time, "stream": line.stream, "text": line.text} for line in lines]


@shared_task(acks_late=False)
def container_log_lines(replica_id: int, tail: int, after: str | None) -> dict[str, Any]:
    """A replica's log lines with cursors: the last ``tail``, or those after cursor ``after``."""

    try:
        engine, container = _engine_container(replica_id)
        result = backfill(engine.containers.log_path(container), container.log_max_files, tail, after)
    except Exception as exc:  # no container (yet), or a bad cursor: say so instead of failing the request
        return {"lines": [], "skipped": 0, "lost": False, "error": str(exc)}
    return {"lines": result.lines, "skipped": result.skipped, "lost": result.lost}


@shared_task(acks_late=False)
def container_stats(replica_id: int) -> dict[str, Any]:
    """One reading of a replica's container's cgroup counters ({} when it does not run)."""

    try:
        engine, container = _engine_container(replica_id)
    except LookupError:
        return {}
    try:
        if not container.is_running:
            return {}
        (reading,) = engine.stats([container.id])
    except Exception as exc:  # gone meanwhile: say so instead of failing the request
        return {"error": str(exc)}
    return reading.to_dict()


def _engine_container(replica_id: int) -> tuple[Any, Any]:
    """This host's engine and the replica's container in it, found by its label (LookupError when
    there is none)."""

    config = agent.AgentConfig.from_env()
    if config is None:
        raise LookupError("no such container on this host")
    engine = agent.engine_for(config.engine_root, config.instance)
    for container in engine.list(all=True):  # by its label: no database needed
        if container.labels.get(agent.LABEL_REPLICA) == str(replica_id):
            return engine, container
    raise LookupError("no such container on this host")


@shared_task(acks_late=False)
def container_sample(replica_id: int) -> dict[str, Any]:
    """One stats sample of a replica's container (engine.dockerapi.stats), with this host's CPU
    count and memory; ``{"error": ...}`` when it cannot be read."""
    try:
        engine, container = _engine_container(replica_id)
        sample = take_sample(engine, container)
    except Exception as exc:  # gone meanwhile: say so instead of failing the request
        return {"error": str(exc)}
    return {"sample": sample_to_dict(sample), "cpus": online_cpus(), "host_memory": host_memory()}


@shared_task(acks_late=False)
def container_top(replica_id: int) -> dict[str, Any]:
    """The processes of a replica's container (``ps -ef`` columns as ``engine.top`` gives them)."""
    try:
        engine, container = _engine_container(replica_id)
        if container.status not in ALIVE:
            return {"error": "not running", "running": False}
        rows = engine.top(container.id)
    except Exception as exc:  # gone meanwhile: say so instead of failing the request
        return {"error": str(exc)}
    return {"processes": [dataclasses.asdict(row) for row in rows]}


@shared_task(acks_late=False, ignore_result=True)
def start_exec(
    session: str,
    container_name: str,
    reply_channel: str,
    command: list[str],
    rows: int,
    cols: int,
    audit_id: int,
    idle_seconds: float,
    tty: bool = True,
    env: list[str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    stdin: bool = True,
) -> None:
    """Start an exec session in a container of this host (on a terminal unless ``tty`` is false);
    it runs in a thread, so this returns."""

    config = agent.AgentConfig.from_env()
    if config is None:
        return
    request = relay.RelayRequest(
        session,
        container_name,
        reply_channel,
        tuple(command),
        rows,
        cols,
        audit_id,
        idle_seconds,
        tty=tty,
        env=tuple(env or ()),
        user=user,
        workdir=workdir,
        stdin=stdin,
    )
    relay.start(agent.engine_for(config.engine_root, config.instance), request, _link(config.name))


def _link(host: str) -> relay.HostLink:
    """How this agent's exec sessions and copies reach the panel: an enrolled agent on its host's
    layer as its own Redis user, completing audit entries through the internal API; else with the
    panel's Redis and the database."""
    state_dir = host_secrets.state_dir()
    if state_dir is None:
        return relay.HostLink(host)
    creds = load_credentials(state_dir)
    return relay.HostLink(host, creds.redis_url, finish=client_for(creds).exec_finished)


@shared_task(acks_late=False, ignore_result=True)
def start_copy(
    container_name: str,
    reply_channel: str,
    path: str,
    upload: bool = False,
    stat_only: bool = False,
    keep_owners: bool = False,
    no_overwrite_dir_non_dir: bool = False,
) -> None:
    """Start a ``docker cp`` of a container of this host; it runs in a thread, so this returns."""

    config = agent.AgentConfig.from_env()
    if config is None:
        return
    request = archive.CopyRequest(
        container_name,
        reply_channel,
        path,
        upload=upload,
        stat_only=stat_only,
        keep_owners=keep_owners,
        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
    )
    archive.start(agent.engine_for(config.engine_root, config.instance), request, _link(config.name))
