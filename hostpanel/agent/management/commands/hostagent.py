"""`manage.py hostagent --name h1 --engine-root DIR --instance NAME`: run this machine's host agent.

A Celery worker consuming the queue ``host.<name>`` (solo pool: one reconcile
at a time; control work only: reconcile, logs, stats, exec, usage) plus a
heartbeat thread that registers the host on first start, keeps its heartbeat
fresh, marks hosts with stale heartbeats down (their replicas move), places
pending replicas, sends waiting builds within their tenant's fair share and
enqueues a periodic reconcile.

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
from django.db import close_old_connections, connection

from hostpanel.agent import host_secrets, remote
from hostpanel.agent import reconcile as agent
from hostpanel.agent.build_runner import clean_interrupted_builds
from hostpanel.agent.credentials import AgentCredentials, InternalClient, PanelError, client_for
from hostpanel.agent.credentials import load as load_credentials
from hostpanel.agent.edge import EdgeAgent, caddy_fields
from hostpanel.agent.follower import start_in_thread
from hostpanel.agent.usage import report_usage
from hostpanel.builds.services import redispatch_host_builds
from hostpanel.celery import app
from hostpanel.deployments import rollout
from hostpanel.edge import services as edge_services
from hostpanel.errors import Conflict
from hostpanel.hosts import dispatch, services
from hostpanel.hosts.models import Host
from hostpanel.images.services import register_host_images
from hostpanel.stacks import services as stacks

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
        client = None
        opts["logs_redis_url"] = ""  # the log follower's Redis: the panel's, or an enrolled host's own user
        if opts["state_dir"]:
            creds = enrolled(Path(opts["state_dir"]), opts["name"])
            opts["name"], client = creds.name, client_for(creds)
            opts["logs_redis_url"] = creds.redis_url
            try:  # a revoked host stops here; a panel starting beside it (`make run`) is waited for
                wait_for_panel(client.me, creds.panel, opts["panel_wait"], self.stdout.write)
            except PanelError as exc:
                raise CommandError(f"the panel refuses this host: {exc}") from exc
        if not opts["name"]:
            raise CommandError("give --name (or --state-dir of an enrolled host)")
        edge_fields = checked_caddy_fields(opts["caddy_admin"])  # before starting anything
        if settings.AGENT_WITHOUT_DATABASE:
            assert client is not None
            self._run_without_database(opts, client, Path(opts["state_dir"]), edge_fields)
            return
        name: str = opts["name"]
        if opts["build_slots"] < 1:
            raise CommandError("--build-slots: give at least 1")
        config = agent.AgentConfig(name=name, engine_root=opts["engine_root"], instance=opts["instance"])
        config.export()
        engine = agent.engine_for(config.engine_root, config.instance)  # fails early on a bad root
        for leftover in engine.recover():  # what a crashed earlier agent left half-created
            self.stdout.write(f"recovered: removed {leftover}")
        cpus = opts["cpus"] if opts["cpus"] is not None else float(os.cpu_count() or 1)
        # its base images first: once the host is up, a tenant may deploy onto it at once
        for image in register_host_images(engine.images):
            self.stdout.write(f"registered base image {image.reference}")
        try:
            host = services.register_host(
                name,
                address=opts["address"],
                cpu_millis=int(cpus * 1000),
                memory_bytes=opts["memory"] or memory_bytes(),
                disk_bytes=shutil.disk_usage(engine.paths.root).total,
                engine_root=config.engine_root,
                engine_instance=config.instance,
            )
        except Conflict as exc:
            raise CommandError(str(exc)) from exc
        for leftover in clean_interrupted_builds(engine):  # builds killed with an earlier agent
            self.stdout.write(f"recovered: removed {leftover}")
        redispatch_host_builds(host)
        edge = start_edge(name, edge_fields)
        edge_services.send_routes_to(host)
        connection.close()
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat_loop,
            args=(
                host.pk,
                host.queue,
                opts["heartbeat_interval"],
                {
                    "reconcile": opts["reconcile_interval"],
                    "usage": opts["usage_interval"],
                    "routes": opts["reconcile_interval"],
                },
                stop,
                engine.rotate_logs,
                edge,
                client,
                lambda host_id: agent.fence(engine, host_id, client),
            ),
            name="heartbeat",
            daemon=True,
        )
        beat.start()

        start_in_thread(
            engine, name, stop, opts["logs_redis_url"]
        )  # follows the logs of containers someone watches
        builds = BuildWorker(name, host.build_queue, opts["build_slots"], opts["loglevel"], stop)
        builds.start()
        self.stdout.write(
            f"host agent {name}: queue {host.queue}, builds on {host.build_queue} "
            f"({opts['build_slots']} slots), engine {config.engine_root} ({config.instance})"
        )

        try:
            app.worker_main(control_worker_args(host.queue, name, opts["loglevel"]))
        finally:
            stop.set()
            builds.stop()
            edge.stop()

    def _run_without_database(
        self,
        opts: dict[str, Any],
        client: InternalClient,
        state_dir: Path,
        edge_fields: dict[str, Any] | None,
    ) -> None:
        """An enrolled agent without the database: it registers its capacity, beats, reconciles and
        reports its engine's usage through the internal API and consumes its own queue; its
        engine's base images are registered with its start. Its build worker runs the builds sent
        to ``build.<name>`` through the internal API (hostpanel/agent/remote_build.py), what
        builds killed with an earlier agent left removed first. It runs the edge as the database
        path does (:func:`start_edge`): the panel answers its start by sending its queue the last
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
        loop = threading.Thread(
            target=_loop_without_database,
            args=(engine, client, state_dir, opts["heartbeat_interval"], opts["reconcile_interval"], stop),
            kwargs={"usage_every": opts["usage_interval"], "edge": edge},
            name="heartbeat",
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

    @staticmethod
    def _heartbeat_loop(
        host_id: int,
        queue: str,
        interval: float,
        every: dict[str, float],
        stop: threading.Event,
        rotate_logs: Callable[[], int],
        edge: EdgeAgent | None = None,
        client: InternalClient | None = None,
        beat: Callable[[int], object] | None = None,
    ) -> None:
        """Every ``interval`` s: beat, mark silent hosts down, place pending replicas, rotate the
        logs of this host's containers (the one rotator of this engine), and queue the periodic jobs
        (with the reconciles: publish the routing table if it changed, resend it to this host, and
        load Caddy's config should Caddy have restarted without it). An enrolled host (``client``)
        beats through the panel's internal API with its host token: revoked, it beats no more."""

        def edge_catch_up(host_id: int, queue: str) -> None:
            edge_services.publish_routes()
            host = Host.objects.filter(pk=host_id).first()
            if host is not None:
                edge_services.send_routes_to(host)
            try:
                if edge is not None:
                    edge.ensure_caddy()
            except Exception:
                log.exception("edge: loading caddy's config failed; retrying")

        senders = {
            "reconcile": dispatch.send_reconcile,
            "usage": dispatch.send_collect_usage,
            "routes": edge_catch_up,
        }
        since = dict(every)  # both right away on start
        while not stop.is_set():
            try:
                rotate_logs()
            except Exception:
                log.exception("log rotation failed; retrying")
            try:
                close_old_connections()
                if beat is not None:  # the agent's: its answer fences what moved away meanwhile
                    beat(host_id)
                elif client is not None:
                    client.heartbeat()
                else:
                    services.heartbeat(host_id)
                services.watch_hosts()  # dead hosts, drains and evacuations, pending replicas
                rollout.advance_all()  # rolls go on even when no reconcile of their hosts runs
                stacks.advance_all()  # stacks' waiting services start once their dependencies are met
                for job, period in every.items():
                    if since[job] >= period and Host.objects.filter(pk=host_id).exists():
                        senders[job](host_id, queue)
                        since[job] = 0.0
            except Exception:
                log.exception("heartbeat failed; retrying")
            finally:
                connection.close()
            stop.wait(interval)
            for job in since:
                since[job] += interval


def control_worker_args(queue: str, name: str, loglevel: str, *, events: bool = True) -> list[str]:
    """The agent's own Celery worker: its host queue, one task at a time (solo pool). Without
    ``events`` it publishes no worker events (online, heartbeats; nothing reads them): an agent
    without the database publishes as its host's Redis user, whose ACL has no ``/0.celeryev/*``
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


RECONCILE_SOON_MIN = 0.2  # seconds: the soonest a back-off or probe brings a reconcile back


def _loop_without_database(
    engine: Any,
    client: InternalClient,
    state_dir: Path,
    interval: float,
    reconcile_every: float,
    stop: threading.Event,
    usage_every: float = 60.0,
    edge: EdgeAgent | None = None,
) -> None:
    """Every ``interval`` s: rotate the logs, beat (removing what the answer fences); every
    ``reconcile_every`` s, or sooner when a reconcile asks to come back (a back-off ends, a probe's
    result is due: its ``retry_in``): reconcile from the internal API (hostpanel/agent/remote.py)
    and bring ``edge`` up to date: the panel's last routing table if newer (:func:`catch_up_routes`),
    its config loaded into Caddy should Caddy have restarted without it; every
    ``usage_every`` s: report the engine's usage (hostpanel/agent/usage.py), the first one after
    one period (its containers run by then)."""
    next_beat = next_reconcile = time.monotonic()  # right away on start
    next_usage = next_beat + usage_every
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + interval
            try:
                engine.rotate_logs()
            except Exception:
                log.exception("log rotation failed; retrying")
            try:
                agent.fence(engine, 0, client)
            except Exception:
                log.exception("heartbeat failed; retrying")
        if now >= next_reconcile:
            wait = reconcile_every
            try:
                done = remote.reconcile(engine, client, state_dir)
                if done.retry_in is not None:
                    wait = min(reconcile_every, max(done.retry_in, RECONCILE_SOON_MIN))
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
            next_reconcile = time.monotonic() + wait
        if now >= next_usage:
            next_usage = now + usage_every
            try:
                report_usage(engine, client)
            except Exception:
                log.exception("usage report failed; retrying")
        stop.wait(max(0.0, min(next_beat, next_reconcile, next_usage) - time.monotonic()))


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
    """This host's edge (hostpanel/agent/edge.py), both paths': DNS answers for its Caddy from the
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
        result_backend=creds.redis_url,
        broker_transport_options=creds.transport_options,
        worker_enable_remote_control=False,
    )
    if settings.AGENT_WITHOUT_DATABASE:  # all its Redis traffic as its own user: no panel password here
        app.conf.update(broker_write_url=creds.redis_url)
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
