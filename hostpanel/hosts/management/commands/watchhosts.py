"""`manage.py watchhosts [--interval 2] [--once]`: the panel's own periodic host checks.

Host agents hold no database, so these run on the panel's side, here (`make run` starts it;
a control plane run in containers has a ``scheduler`` service): declare dead hosts and move
their stateless replicas, let drains and evacuations end, place pending replicas, and tell
the apps above (``hosts.signals.checked``: rolls and stacks' waiting services go on).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from hostpanel.hosts import services

log = logging.getLogger("hostpanel.watchhosts")


class Command(BaseCommand):
    help = "Run the periodic host checks: dead hosts, drains and evacuations, pending replicas."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
        parser.add_argument("--once", action="store_true", help="check once and exit")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["interval"] <= 0:
            raise CommandError("--interval: give a number of seconds above 0")
        stop = threading.Event()
        while not stop.is_set():
            try:
                close_old_connections()
                for host in services.watch_hosts():
                    self.stdout.write(f"host {host.name} is down: its stateless replicas moved")
            except Exception:  # a busy or unreachable database: the next pass tries again
                log.exception("host checks failed; retrying")
            finally:
                connection.close()
            if opts["once"]:
                return
            stop.wait(opts["interval"])
