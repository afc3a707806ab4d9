"""``GET /containers/{id}/logs``: a container's output as Docker clients read it.

Without a TTY each line is a frame of the multiplexed stream (stdout 1, stderr 2); with one,
raw text. The lines come from the container's host through the panel's log services; with
``follow`` the answer streams new lines until the container stops or the client goes.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any

from engine.dockerapi.http import STDERR, STDOUT, APIError, Request, Response, Stream, frame
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.lookup import client_gone, find, identity_of, replica_of
from hostpanel.dockerapi.models import DockerContainer
from hostpanel.errors import ServiceError
from hostpanel.logstream import services as logstream

LOG_TAIL_ALL = 10_000  # what "all" asks the agent for (its buffer is bounded too)
FOLLOW_POLL_SECONDS = 0.5
ACCESS_RECHECK_SECONDS = 5.0  # a revoked certificate ends a follow within this long
LIVE = (Replica.State.RUNNING, Replica.State.STARTING, Replica.State.BACKOFF, Replica.State.UPDATING)


def _moment(text: str) -> float | None:
    """A log line's time (RFC 3339, nanoseconds allowed) as a unix timestamp."""
    try:
        head, _, rest = text.partition(".")
        fraction = "".join(c for c in rest if c.isdigit())[:6]
        base = datetime.datetime.fromisoformat(head.removesuffix("Z")).replace(tzinfo=datetime.UTC)
        return base.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    except ValueError:
        return None


def _seconds_arg(request: Request, name: str) -> float | None:
    value = request.arg(name, "")
    if value in ("", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        raise APIError(400, f"invalid value for {name!r}: {value!r} (unix seconds)") from None


class Encoder:
    """Lines -> the bytes of the answer, as the request's options say."""

    def __init__(self, request: Request, tty: bool, *, default_streams: bool = False) -> None:
        self.stdout = request.flag("stdout", default_streams)
        self.stderr = request.flag("stderr", default_streams)
        self.timestamps = request.flag("timestamps")
        self.since, self.until = _seconds_arg(request, "since"), _seconds_arg(request, "until")
        self.tty = tty

    def encode(self, lines: list[dict[str, Any]]) -> bytes:
        out = bytearray()
        for line in lines:
            kind = line.get("stream")
            stream = STDERR if kind == "stderr" else STDOUT
            if (
                kind == "error"
                or (stream == STDOUT and not self.stdout)
                or (stream == STDERR and not self.stderr)
            ):
                continue
            if self.since is not None or self.until is not None:
                moment = _moment(str(line.get("time", "")))
                if moment is not None and (
                    (self.since is not None and moment < self.since)
                    or (self.until is not None and moment > self.until)
                ):
                    continue
            text = str(line.get("text", ""))
            data = (f"{line.get('time', '')} {text}\n" if self.timestamps else f"{text}\n").encode()
            out += data if self.tty else frame(stream, data)
        return bytes(out)

    @property
    def content_type(self) -> str:
        return (
            "application/vnd.docker.raw-stream" if self.tty else "application/vnd.docker.multiplexed-stream"
        )


def container_logs(request: Request) -> Response | Stream:
    """``GET /containers/{id}/logs`` (``follow``, ``tail``, ``since``, ``until``, ``timestamps``,
    ``stdout``, ``stderr``)."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    replica = replica_of(container)
    tail_arg = request.arg("tail", "all")
    tail = LOG_TAIL_ALL if tail_arg in ("", "all") else max(request.int_arg("tail") or 0, 0)
    encoder = Encoder(request, bool(container.config.get("Tty")))
    if request.flag("follow"):
        lines = follow_lines(identity, container, tail, encoder, lambda: client_gone(request.connection))
        return Stream(lines, content_type=encoder.content_type)
    if replica is None or replica.host is None or tail == 0:
        lines: list[dict[str, Any]] = []
    else:
        lines = deployments.container_logs(identity.actor, replica, tail)
    return Response(body=encoder.encode(lines), content_type=encoder.content_type)


def _live(container: DockerContainer) -> tuple[Replica | None, bool]:
    """The container's replica now, and whether it (still) runs or is about to."""
    app = App.objects.filter(pk=container.app_id).first()
    replica = (
        Replica.objects.filter(app_id=container.app_id)
        .select_related("host", "app__tenant")
        .order_by("index")
        .first()
    )
    running = (
        app is not None and app.state == App.State.RUNNING and replica is not None and replica.state in LIVE
    )
    return replica, running


def follow_lines(
    identity: Identity,
    container: DockerContainer,
    tail: int,
    encoder: Encoder,
    gone: Callable[[], bool] = lambda: False,
) -> Iterator[bytes]:
    """The last ``tail`` lines, then each new one, until the container stops, access ends or the
    client is ``gone``."""
    cursor: str | None = None
    first = True
    checked = time.monotonic()
    while True:
        replica, running = _live(container)  # read before the lines: the last ones are not missed
        if replica is not None and replica.host is not None:
            try:
                wanted = max(tail, 1) if first else LOG_TAIL_ALL
                answer = logstream.container_log_lines(identity.actor, replica, wanted, cursor)
            except ServiceError:
                answer = {"lines": []}  # not started on its host yet
            lines = answer.get("lines") or []
            if lines:
                cursor = lines[-1].get("cursor") or cursor
                if not (first and tail == 0):
                    yield encoder.encode(lines)
            first = False
        if not running or gone():
            return
        if time.monotonic() - checked > ACCESS_RECHECK_SECONDS:
            checked = time.monotonic()
            if not identity.still_valid():
                return
        time.sleep(FOLLOW_POLL_SECONDS)
