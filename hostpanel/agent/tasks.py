"""Tasks the host agents run. Thin: the reconcile from the internal API (remote.py), and the reads,
exec sessions and copies of a container of this host, found by its labels (no database)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery import shared_task

from engine.dockerapi.stats import host_memory, sample_to_dict, take_sample
from engine.runtime.model import ALIVE
from engine.runtime.procfs import online_cpus
from hostpanel.agent import archive, host_secrets, relay, remote, wakeup
from hostpanel.agent import host_engine as agent
from hostpanel.agent.credentials import client_for
from hostpanel.agent.credentials import load as load_credentials
from hostpanel.logstream.reading import backfill

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def reconcile_host(host_id: int) -> None:
    """Make this host's engine match its desired state (idempotent, safe to retry): the internal
    API's document (hostpanel/agent/remote.py: its replicas, then the tenant purges and deleted
    volumes it names). ``host_id`` is the panel's; the agent's credentials say which host it is."""
    _reconcile()


@shared_task(acks_late=True, ignore_result=True)
def purge_tenant(host_id: int, slug: str) -> None:
    """A tenant was deleted: reconcile now, since the desired document names the purges this host
    should do (``purge_tenants``); ``slug`` is only for the logs of the panel that sent it."""
    _reconcile()


def _reconcile() -> None:
    config = agent.AgentConfig.from_env()
    state_dir = host_secrets.state_dir()
    if config is None or state_dir is None:
        log.warning("a reconcile reached a process that is not an enrolled host agent: ignored")
        return
    engine = agent.engine_for(config.engine_root, config.instance)
    done = remote.reconcile(engine, client_for(load_credentials(state_dir)), state_dir)
    wakeup.due.ask(done.retry_in)  # the loop comes back for it (a probe's result, a back-off's end)
    if done.started or done.restarted or done.removed or done.stopped or done.failed:
        log.info("reconcile %s: %s", config.name, done)


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
    """How this agent's exec sessions and copies reach the panel: on its host's layer as its own
    Redis user, completing audit entries through the internal API."""
    state_dir = host_secrets.state_dir()
    if state_dir is None:
        raise LookupError("not an enrolled host agent: no state directory")
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
