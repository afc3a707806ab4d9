"""``POST /containers/{id}/attach``: the container's output until it exits.

What ``docker run`` without ``-d`` attaches to (from the container's start) and ``docker
attach`` (to a running container: from now): the hijacked connection carries the lines the
container writes (multiplexed without a TTY), read from its host like ``logs -f``.
Input is not forwarded (``-i`` and ``-t`` are not served by the tenants' door yet).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import IO

from django.conf import settings

from engine.dockerapi.http import APIError, Hijack, Request
from hostpanel.deployments.models import App, Replica
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.logs import LOG_TAIL_ALL, Encoder, follow_lines
from hostpanel.dockerapi.lookup import find, identity_of, replica_of
from hostpanel.dockerapi.models import DockerContainer

START_POLL_SECONDS = 0.2


def attach_container(request: Request) -> Hijack:
    """Attach to a container's output (``stream``; ``stdin`` is refused)."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    if request.flag("stdin"):
        raise APIError(
            400, "attaching stdin (docker run -i / -t, docker attach) is not served by this door yet; use -d"
        )
    encoder = Encoder(request, bool(container.config.get("Tty")), default_streams=True)

    def run(rfile: IO[bytes], sock: socket.socket) -> None:
        try:
            # no client_gone() here: a client that sends no input half-closes its side (TLS's
            # close_notify), which looks the same as leaving; a client that left fails the send
            for chunk in output(identity, container, encoder):
                sock.sendall(chunk)
        except OSError:
            pass  # the client went away

    return Hijack(run, content_type=encoder.content_type)


def output(identity: Identity, container: DockerContainer, encoder: Encoder) -> Iterator[bytes]:
    """A running container (``docker attach``): what it writes from now until it stops or the
    client leaves. Otherwise (``docker run`` attaches before the start): wait for its next start
    (at most the start wait), then follow that run until it stops."""
    first = replica_of(container)
    running = first is not None and first.state == Replica.State.RUNNING
    if running and container.app.state == App.State.RUNNING:
        yield from follow_lines(identity, container, 0, encoder)
        return
    started_before = first.started_at if first else None
    deadline = time.monotonic() + settings.HOSTPANEL_DOCKER_API_WAIT_SECONDS
    while True:
        replica = replica_of(container)
        if replica is None:
            return
        if replica.started_at is not None and replica.started_at != started_before:
            encoder.since = replica.started_at.timestamp() - 1  # this run's lines, not an older run's
            break
        if time.monotonic() > deadline:
            return
        time.sleep(START_POLL_SECONDS)
    yield from follow_lines(identity, container, LOG_TAIL_ALL, encoder)
