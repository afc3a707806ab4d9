"""`manage.py hostagent --state-dir DIR [--engine-root DIR --instance NAME]`: run this host's agent.

The host must be enrolled first (`manage.py host add NAME` on the panel prints the join command,
which writes ``DIR``'s credentials and starts this; `make run` enrolls its own host with
`manage.py enroll_local`). The agent holds no database: it talks to the panel only through its
own Redis user (its queues) and the panel's internal API with its host token.

A Celery worker consuming the queue ``host.<name>`` (solo pool: one task at a time; control work
only: reconcile, logs, stats, exec, copies) plus a loop thread that beats (removing what the
answer fences), reconciles from the internal API, reports usage and keeps the edge proxy current.

Builds never run in that worker: the command also starts (and restarts, should
it die) a second Celery worker process on the queue ``build.<name>`` with
``--build-slots`` prefork processes (``HOSTPANEL_BUILD_SLOTS``, default 2), so a
tenant's build can hold a build slot for its whole time limit while control
work goes on. The build worker dies with the agent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hostpanel.agent import host_engine as agent
from hostpanel.agent import host_secrets, remote, wakeup
from hostpanel.agent.build_runner import clean_interrupted_builds
from hostpanel.agent.credentials import AgentCredentials, InternalClient, PanelError, client_for
from hostpanel.agent.credentials import load as load_credentials
from hostpanel.agent.edge import EdgeAgent, caddy_fields
from hostpanel.agent.follower import start_in_thread
from hostpanel.agent.usage import report_usage
from hostpanel.celery import app

log = logging.getLogger("hostpanel.hostagent")


def memory_bytes() -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise CommandError("cannot read MemTotal from /proc/meminfo; give --memory")


class Command(BaseCommand):
    help = "Run the host agent: a Celery worker on queue host.<name> plus a heartbeat loop."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", help="host name; the agent consumes queue host.<name>")
        parser.add_argument(
            "--state-dir",
            default=os.environ.get("HOSTPANEL_AGENT_STATE_DIR", ""),
            help="an enrolled host's credentials (its join command wrote them): name, Redis user, token",
        )
        parser.add_argument("--engine-root", default=str(settings.HOSTPANEL_ENGINE_ROOT))
        parser.add_argument("--instance", default=settings.HOSTPANEL_ENGINE_INSTANCE)
        parser.add_argument("--address", default=socket.getfqdn())
        parser.add_argument("--cpus", type=float, help="CPU capacity to offer (default: os.cpu_count())")
        parser.add_argument("--memory", type=int, help="memory capacity in bytes (default: MemTotal)")
        parser.add_argument(
            "--heartbeat-interval", type=float, default=5.0, help="seconds between heartbeats"
        )
        parser.add_argument(
            "--reconcile-interval", type=float, default=10.0, help="seconds between periodic reconciles"
        )
        parser.add_argument(
            "--usage-interval", type=float, default=60.0, help="seconds between usage collections"
        )
        parser.add_argument(
            "--build-slots",
            type=int,
            default=settings.HOSTPANEL_BUILD_SLOTS,
            help="builds run at once by the build worker (queue build.<name>)",
        )
        parser.add_argument(
            "--caddy-admin",
            default=settings.HOSTPANEL_CADDY_ADMIN,
            help="unix socket of this host's Caddy admin API ('' = no edge proxy on this host)",
        )
        parser.add_argument(
            "--panel-wait",
            type=float,
            default=60.0,
            help="seconds an enrolled agent waits for a panel that does not answer yet at its start",
        )
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["build_slots"] < 1:
            raise CommandError("--build-slots: give at least 1")
        edge_fields = checked_caddy_fields(opts["caddy_admin"])  # before starting anything
        if not opts["state_dir"]:
            raise CommandError(
                "this host is not enrolled: give --state-dir (or HOSTPANEL_AGENT_STATE_DIR) of an "
                "enrolled host; enroll one with `manage.py host add NAME` on the panel and the join "
                "command it prints (README, Adding a host)"
            )
        if not settings.AGENT_WITHOUT_DATABASE:
            raise CommandError(
                "a host agent holds no database: start it with HOSTPANEL_AGENT_STATE_DIR set to its "
                "state directory and without DATABASE_URL in its environment (the join command and "
                "`make run` do)"
            )
        creds = enrolled(Path(opts["state_dir"]), opts["name"])
        opts["name"], client = creds.name, client_for(creds)
        opts["logs_redis_url"] = creds.redis_url  # the log follower's Redis: the host's own user
        try:  # a revoked host stops here; a panel starting beside it (`make run`) is waited for
            wait_for_panel(client.me, creds.panel, opts["panel_wait"], self.stdout.write)
        except PanelError as exc:
            raise CommandError(f"the panel refuses this host: {exc}") from exc
        self._run(opts, client, Path(opts["state_dir"]), edge_fields)

    def _run(
        self,
        opts: dict[str, Any],
        client: InternalClient,
        state_dir: Path,
        edge_fields: dict[str, Any] | None,
    ) -> None:
        """The agent (enrolled, no database): it registers its capacity, beats, reconciles and
        reports its engine's usage through the internal API and consumes its own queue; its
        engine's base images are registered with its start. Its build worker runs the builds sent
        to ``build.<name>`` through the internal API (hostpanel/agent/remote_build.py), what
        builds killed with an earlier agent left removed first. It runs the edge
        (:func:`start_edge`): the panel answers its start by sending its queue the last
        routing table, and the later ones as it publishes them (the ``apply_routes`` task); its
        reconciles load Caddy's config again should Caddy have restarted without it. It follows the
        logs viewers watch (hostpanel/agent/follower.py) as its own Redis user, on its own channels,
        and relays exec sessions and copies there too (the ``start_exec``/``start_copy`` tasks:
        relay.py, archive.py), completing their audit entries through the internal API.
        Not here (the panel does it): the panel-wide work (placement, dead
        hosts, rolls), which the panel's ``manage.py watchhosts`` does."""
        config = agent.AgentConfig(
            name=opts["name"], engine_root=opts["engine_root"], instance=opts["instance"]
        )
        config.export()
        engine = agent.engine_for(config.engine_root, config.instance)
        for leftover in engine.recover():
            self.stdout.write(f"recovered: removed {leftover}")
        for leftover in clean_interrupted_builds(engine):  # builds killed with an earlier agent
            self.stdout.write(f"recovered: removed {leftover}")
        cpus = opts["cpus"] if opts["cpus"] is not None else float(os.cpu_count() or 1)
        try:
            host = client.start(
                {
                    "address": opts["address"],
                    "cpu_millis": int(cpus * 1000),
                    "memory_bytes": opts["memory"] or memory_bytes(),
                    "disk_bytes": shutil.disk_usage(engine.paths.root).total,
                    "engine_root": config.engine_root,
                    "engine_instance": config.instance,
                    "base_images": engine.images.base_tags(),
                }
            )
        except PanelError as exc:
            raise CommandError(f"the panel refuses this agent's start: {exc}") from exc
        for reference in host.get("registered_images", []):
            self.stdout.write(f"registered base image {reference}")
        edge = start_edge(config.name, edge_fields)  # the table the start asked for waits in the queue
        stop = threading.Event()
        _beat(engine, client)  # first: a host back from a partition fences what moved away meanwhile
        beats = threading.Thread(
            target=_beat_loop,
            args=(engine, client, opts["heartbeat_interval"], stop),
            name="heartbeat",
            daemon=True,
        )
        beats.start()
        loop = threading.Thread(
            target=_agent_loop,
            args=(engine, client, state_dir, opts["reconcile_interval"], stop),
            kwargs={"usage_every": opts["usage_interval"], "edge": edge},
            name="reconcile",
            daemon=True,
        )
        loop.start()
        queue, build_queue = host["queues"][0], host["queues"][1]
        builds = BuildWorker(config.name, build_queue, opts["build_slots"], opts["loglevel"], stop)
        builds.start()  # the start's answer sent it the host's queued builds again
        start_in_thread(engine, config.name, stop, opts["logs_redis_url"])  # as its own Redis user
        self.stdout.write(
            f"host agent {config.name} (no database): queue {queue}, builds on {build_queue} "
            f"({opts['build_slots']} slots), engine {config.engine_root}"
        )
        try:
            app.worker_main(control_worker_args(queue, config.name, opts["loglevel"], events=False))
        finally:
            stop.set()
            builds.stop()
            edge.stop()


def control_worker_args(queue: str, name: str, loglevel: str, *, events: bool = True) -> list[str]:
    """The agent's own Celery worker: its host queue, one task at a time (solo pool). Without
    ``events`` it publishes no worker events (online, heartbeats; nothing reads them): the agent
    publishes as its host's Redis user, whose ACL has no ``/0.celeryev/*``
    channel (hosts/redis_acl.py), so they would be refused and piled up in the worker's buffer."""
    return [
        "worker",
        "--queues",
        queue,
        "--pool",
        "solo",
        "--hostname",
        f"{name}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
        *([] if events else ["--without-heartbeat"]),
        "--loglevel",
        loglevel,
    ]


def _beat(engine: Any, client: InternalClient) -> None:
    """Rotate the logs of this host's containers (the one rotator of this engine) and beat,
    removing what the answer fences (:func:`host_engine.fence`); failures are logged."""
    try:
        engine.rotate_logs()
    except Exception:
        log.exception("log rotation failed; retrying")
    try:
        agent.fence(engine, client)
    except Exception:
        log.exception("heartbeat failed; retrying")


def _beat_loop(engine: Any, client: InternalClient, interval: float, stop: threading.Event) -> None:
    """:func:`_beat` every ``interval`` s (the agent's start beat once before). A thread of its
    own: a reconcile that waits (a container's stop takes its grace period) never holds a beat back,
    so the panel never takes a busy host for a dead one."""
    while not stop.wait(interval):
        _beat(engine, client)


def _agent_loop(
    engine: Any,
    client: InternalClient,
    state_dir: Path,
    reconcile_every: float,
    stop: threading.Event,
    usage_every: float = 60.0,
    edge: EdgeAgent | None = None,
    soon: wakeup.Wakeup = wakeup.due,
) -> None:
    """Every ``reconcile_every`` s, or sooner when a reconcile of this process asked to come back
    (``soon``: a back-off ends, a probe's result is due; the loop's own reconciles or a task's):
    reconcile from the internal API (hostpanel/agent/remote.py) and bring ``edge`` up to date: the
    panel's last routing table if newer (:func:`catch_up_routes`), its config loaded into Caddy
    should Caddy have restarted without it; every ``usage_every`` s: report the engine's usage
    (hostpanel/agent/usage.py), the first one after one period (its containers run by then).
    Beats are :func:`_beat_loop`'s."""
    next_reconcile = time.monotonic()  # right away on start
    next_usage = next_reconcile + usage_every
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_reconcile or soon.is_due(now):
            soon.take()
            try:
                soon.ask(remote.reconcile(engine, client, state_dir).retry_in)
            except Exception:
                log.exception("reconcile failed; retrying")
            if edge is not None:
                try:
                    catch_up_routes(edge, client)
                except Exception:
                    log.exception("edge: catching up with the routing table failed; retrying")
                try:
                    edge.ensure_caddy()
                except Exception:
                    log.exception("edge: loading caddy's config failed; retrying")
            next_reconcile = time.monotonic() + reconcile_every
        if now >= next_usage:
            next_usage = now + usage_every
            try:
                report_usage(engine, client)
            except Exception:
                log.exception("usage report failed; retrying")
        soon.sleep(min(next_reconcile, next_usage), stop)


def catch_up_routes(edge: EdgeAgent, client: InternalClient) -> bool:
    """Serve the panel's last routing table if it is newer than ``edge``'s (``GET host/routes``):
    one missed while this host was marked down, or a lost message. True if one was applied."""
    table = client.routes(edge.generation)
    if table is None or not edge.apply(table):
        return False
    log.info("routes generation %s applied (caught up)", edge.generation)
    return True


def checked_caddy_fields(caddy_admin: str) -> dict[str, Any] | None:
    """:func:`caddy_fields` for ``--caddy-admin``; a setting this host cannot do is a CommandError."""
    try:
        return caddy_fields(caddy_admin)
    except ValueError as exc:
        raise CommandError(f"edge proxy: {exc}") from exc


def start_edge(name: str, caddy: dict[str, Any] | None) -> EdgeAgent:
    """This host's edge (hostpanel/agent/edge.py): DNS answers for its Caddy from the
    last routing table kept under ``<var>/edge/<name>``, then the config loaded into Caddy
    (``caddy``: :func:`checked_caddy_fields`; None: no Caddy here). The ``apply_routes`` task
    hands it the tables the panel sends to this host's queue."""
    try:
        edge = EdgeAgent(
            Path(settings.VAR_DIR) / "edge" / name,
            caddy,
            dns_port=settings.HOSTPANEL_EDGE_DNS_PORT,
        )
    except OSError as exc:
        raise CommandError(f"edge proxy: {exc}") from exc
    edge.start()
    return edge


PANEL_STARTING = {0, 502, 503, 504}  # unreachable, or its front answers before its workers do


def wait_for_panel(
    call: Callable[[], dict[str, Any]], panel: str, seconds: float, say: Callable[[str], object]
) -> dict[str, Any]:
    """``call()``'s answer, retried every second for up to ``seconds`` while the panel at ``panel``
    does not answer yet (it starts after its agent in `make run`); a refusal (401: revoked) at
    once. Giving up is a :class:`PanelError` that says how long it waited."""
    deadline = time.monotonic() + seconds
    waiting = False
    while True:
        try:
            return call()
        except PanelError as exc:
            if exc.status not in PANEL_STARTING:
                raise
            if time.monotonic() >= deadline:
                raise PanelError(f"no answer from the panel at {panel} within {seconds:g} s: {exc}") from exc
            if not waiting:
                say(f"the panel at {panel} does not answer yet ({exc}); retrying for up to {seconds:g} s")
                waiting = True
        time.sleep(1.0)


def enrolled(state_dir: Path, name: str | None) -> AgentCredentials:
    """The credentials in ``state_dir``, applied: the Celery workers (this process's and the build
    worker's, through the environment) consume and write results as the host's own Redis user."""
    try:
        creds = load_credentials(state_dir)
    except PanelError as exc:
        raise CommandError(str(exc)) from exc
    if name and name != creds.name:
        raise CommandError(f"--name {name}: this host is enrolled as {creds.name} ({state_dir})")
    os.environ.update(creds.environment())
    # secret values come sealed to this host's key from the internal API (agent/host_secrets.py)
    os.environ[host_secrets.ENV_STATE_DIR] = str(state_dir.resolve())
    app.conf.update(
        broker_read_url=creds.redis_url,
        broker_write_url=creds.redis_url,  # all its Redis traffic as its own user: no panel password here
        result_backend=creds.redis_url,
        broker_transport_options=creds.transport_options,
        worker_enable_remote_control=False,
    )
    app._local = threading.local()  # the result backend, made again from the new URL
    return creds


def _die_with_parent() -> None:
    """In the build worker before exec: SIGKILL it when the agent's supervising thread ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class BuildWorker:
    """The agent's build worker: ``celery worker -Q build.<host>`` with ``slots`` prefork processes,
    started by a supervising thread that starts it again when it dies, until the agent stops."""

    def __init__(self, name: str, queue: str, slots: int, loglevel: str, stop: threading.Event) -> None:
        self.args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hostpanel",
            "worker",
            "--queues",
            queue,
            "--pool",
            "prefork",
            "--concurrency",
            str(slots),
            "--prefetch-multiplier",
            "1",
            "--hostname",
            f"{name}-builds@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            loglevel,
        ]
        self.stop_event = stop
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="build-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        while not self.stop_event.is_set():
            with self._lock:
                if self.stop_event.is_set():
                    return
                self.proc = subprocess.Popen(
                    self.args,
                    cwd=settings.BASE_DIR,
                    preexec_fn=_die_with_parent,
                )
            code = self.proc.wait()
            if not self.stop_event.is_set():
                log.error("the build worker ended (exit code %s); starting it again", code)
                self.stop_event.wait(1.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the build worker to end (running builds are cut off: the next agent start cleans up)."""
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)  # celery's cold shutdown
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
