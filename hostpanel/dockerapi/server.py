"""The tenants' Docker API server: TLS with client certificates of the panel's CA, one router.

``build_server(address)`` is what ``manage.py dockerapi`` serves (and the tests, on a free
port). Every request is authenticated (:mod:`hostpanel.dockerapi.identity`) before routing;
each endpoint translates into the panel's services.
"""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from engine.dockerapi import system
from engine.dockerapi.http import Router, TLSServer
from hostpanel.dockerapi import (
    build,
    ca,
    container_copy,
    containers,
    daemon,
    events,
    execs,
    images,
    networks,
    readings,
    volumes,
)
from hostpanel.dockerapi.certs import api_host, authority
from hostpanel.dockerapi.identity import authenticate


def tenant_router() -> Router:
    """Every endpoint of the tenants' door."""
    router = Router()
    system.register_handshake(router)
    for module in (
        *(daemon, containers, execs, readings, container_copy),
        *(images, volumes, build, networks, events),
    ):
        module.register(router)
    return router


def server_names(bind: str) -> list[str]:
    """The names the server certificate is valid for: the advertised host, the bind address, loopback."""
    names = [api_host()]
    if bind not in ("", "0.0.0.0", "::"):
        names.append(bind)
    return [*names, "localhost", "127.0.0.1", "::1"]


def ssl_context(bind: str) -> ssl.SSLContext:
    """TLS 1.2+ with a fresh server certificate; every client must show one our CA signed
    (unless ``HOSTPANEL_DOCKER_API_TOKENS`` lets clients come with a panel API token instead)."""
    directory = Path(settings.HOSTPANEL_DOCKER_API_DIR)
    cert_path, key_path = ca.server_certificate(authority(), directory, server_names(bind))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    context.load_verify_locations(directory / ca.CA_CERT)
    # with API tokens allowed a client may come without a certificate (then its token decides);
    # a certificate it shows must still be one of our CA's, checked in the handshake
    context.verify_mode = ssl.CERT_OPTIONAL if settings.HOSTPANEL_DOCKER_API_TOKENS else ssl.CERT_REQUIRED
    return context


HANDSHAKE_SECONDS = 15.0


class DoorServer(TLSServer):
    """The TLS server: the handshake runs on the connection's own thread (a slow or hostile
    client never holds up the others' accepts), and each thread's database connections are
    closed when its client leaves."""

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (TLS EOF, reset) is no error worth a traceback."""
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            return
        super().handle_error(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(HANDSHAKE_SECONDS)
            try:
                request.do_handshake()
            except (OSError, ValueError):  # another CA, no certificate, not TLS: dropped here
                self.shutdown_request(request)
                return
            request.settimeout(None)
            super().process_request_thread(request, client_address)
        finally:
            connections.close_all()


def build_server(bind: str | None = None, port: int | None = None) -> DoorServer:
    """The door, listening on ``bind:port`` (settings by default; port 0 picks a free one)."""
    bind = settings.HOSTPANEL_DOCKER_API_BIND if bind is None else bind
    port = settings.HOSTPANEL_DOCKER_API_PORT if port is None else port
    return DoorServer((bind, port), tenant_router(), ssl_context(bind), authenticate=authenticate)
