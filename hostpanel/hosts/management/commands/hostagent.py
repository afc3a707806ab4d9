"""`manage.py hostagent --name h1 --engine-root DIR --instance NAME`: run this machine's host agent.

A Celery worker consuming the queue ``host.<name>`` (solo pool: one reconcile
at a time) plus a heartbeat thread that registers the host on first start,
keeps its heartbeat fresh, marks hosts with stale heartbeats down (their
replicas move), places pending replicas and enqueues a periodic reconcile.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from hostpanel.errors import Conflict
from hostpanel.hosts import agent, dispatch, services
from hostpanel.hosts.models import Host
from hostpanel.images.services import register_host_images

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
        parser.add_argument("--name", required=True, help="host name; the agent consumes queue host.<name>")
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
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: Any, **opts: Any) -> None:
        name: str = opts["name"]
        config = agent.AgentConfig(name=name, engine_root=opts["engine_root"], instance=opts["instance"])
        config.export()
        engine = agent.engine_for(config.engine_root, config.instance)  # fails early on a bad root
        for leftover in engine.recover():  # what a crashed earlier agent left half-created
            self.stdout.write(f"recovered: removed {leftover}")
        cpus = opts["cpus"] if opts["cpus"] is not None else float(os.cpu_count() or 1)
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
        from hostpanel.builds.services import clean_interrupted_builds

        for leftover in clean_interrupted_builds(engine):  # builds killed with an earlier agent
            self.stdout.write(f"recovered: removed {leftover}")
        for image in register_host_images(engine.images):
            self.stdout.write(f"registered base image {image.reference}")
        connection.close()
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat_loop,
            args=(
                host.pk,
                host.queue,
                opts["heartbeat_interval"],
                {"reconcile": opts["reconcile_interval"], "usage": opts["usage_interval"]},
                stop,
                engine.rotate_logs,
            ),
            name="heartbeat",
            daemon=True,
        )
        beat.start()
        from hostpanel.logstream.follower import start_in_thread

        start_in_thread(engine, name, stop)  # follows the logs of containers someone watches
        self.stdout.write(
            f"host agent {name}: queue {host.queue}, engine {config.engine_root} ({config.instance})"
        )
        from hostpanel.celery import app

        try:
            app.worker_main(
                [
                    "worker",
                    "--queues",
                    host.queue,
                    "--pool",
                    "solo",
                    "--hostname",
                    f"{name}@{socket.gethostname()}",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    opts["loglevel"],
                ]
            )
        finally:
            stop.set()

    @staticmethod
    def _heartbeat_loop(
        host_id: int,
        queue: str,
        interval: float,
        every: dict[str, float],
        stop: threading.Event,
        rotate_logs: Callable[[], int],
    ) -> None:
        """Every ``interval`` s: beat, mark silent hosts down, place pending replicas, rotate the
        logs of this host's containers (the one rotator of this engine), and queue the periodic jobs."""
        senders = {"reconcile": dispatch.send_reconcile, "usage": dispatch.send_collect_usage}
        since = dict(every)  # both right away on start
        while not stop.is_set():
            try:
                rotate_logs()
            except Exception:
                log.exception("log rotation failed; retrying")
            try:
                close_old_connections()
                services.heartbeat(host_id)
                services.mark_stale_hosts()
                services.schedule_pending()
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
