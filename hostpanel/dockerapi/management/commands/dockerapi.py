"""`manage.py dockerapi [--bind ADDR] [--port N]`: serve the tenants' Docker Engine API (TLS).

Every client shows a certificate the panel issued (the tenant's "Docker API" page); the
door answers as that member, in that tenant, with that role. `make run` starts it.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from hostpanel.dockerapi.certs import endpoint
from hostpanel.dockerapi.server import build_server


class Command(BaseCommand):
    help = "Serve the tenants' Docker Engine API over TLS with client certificates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=None, help="address (default HOSTPANEL_DOCKER_API_BIND)")
        parser.add_argument("--port", type=int, default=None, help="port (default HOSTPANEL_DOCKER_API_PORT)")
        parser.add_argument("--verbose", action="store_true", help="log every request")

    def handle(self, *args: Any, **options: Any) -> None:
        server = build_server(options["bind"], options["port"])
        server.verbose = options["verbose"]
        host, port = str(server.server_address[0]), int(server.server_address[1])
        self.stdout.write(
            f"Docker API for tenants on tcp://{host}:{port} (TLS, client certificates of the CA in"
            f" {settings.HOSTPANEL_DOCKER_API_DIR}); clients use {endpoint()}"
        )
        self.stdout.flush()

        def stop(signum: int, frame: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        sys.stdout.flush()
