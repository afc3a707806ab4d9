"""``GET /events``: the engine's event journal as Docker's event stream.

``since``/``until`` are Unix times (``1700000000.123456789``, what the CLI sends) or RFC 3339;
``filters`` is Docker's JSON (type, event, container, image, label, volume, network). Without
``until`` the stream follows new events until the client hangs up. A tenant's door passes its
tenant: nothing of another tenant is ever read.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine.dockerapi.http import APIError, Request, Router, Stream
from engine.errors import InvalidSpec
from engine.events import Event, EventFilter, parse_event_time

if TYPE_CHECKING:
    from engine.engine import Engine

LEGACY_TYPES = ("container", "image")
"""Types whose events also carry the pre-1.22 fields ``status``, ``id`` (and ``from``)."""


def docker_event(event: Event) -> dict[str, Any]:
    """One event in the shape `docker events` and docker-py read."""
    seconds = event.time_nano // 1_000_000_000
    data: dict[str, Any] = {
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.id, "Attributes": dict(event.attributes)},
        "scope": "local",
        "time": seconds,
        "timeNano": event.time_nano,
    }
    if event.type in LEGACY_TYPES:
        data["status"] = event.action
        data["id"] = event.id
        if event.type == "container" and "image" in event.attributes:
            data["from"] = event.attributes["image"]
    return data


def parse_window(since: str, until: str, now_ns: int | None = None) -> tuple[int | None, int | None]:
    """``since``/``until`` in nanoseconds; without either, only events from now on (as dockerd)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        start = parse_event_time(since) if since else None
        end = parse_event_time(until) if until else None
    except InvalidSpec as exc:
        raise APIError(400, exc.message) from None
    if start is not None and end is not None and end < start:
        raise APIError(400, "until must not be before since")
    if start is None and end is None:
        start = now_ns
    return start, end


def client_gone(sock: socket.socket) -> bool:
    """Whether the client closed its side (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # a TLS socket cannot peek: the next write tells instead
        return False


def event_stream(engine: Engine, request: Request, *, tenant: str | None) -> Stream:
    """The answer to ``GET /events`` for ``tenant`` (None: the operator, every event)."""
    start, end = parse_window(request.arg("since"), request.arg("until"))
    filters = request.json_arg("filters")
    if filters is not None and not isinstance(filters, dict):
        raise APIError(400, 'filters must be a JSON object such as {"type": ["container"]}')
    try:
        event_filter = EventFilter.parse(filters)
    except InvalidSpec as exc:
        raise APIError(400, exc.message) from None
    events = engine.events(
        event_filter,
        since=start,
        until=end,
        follow=True,
        tenant=tenant,
        stop=lambda: client_gone(request.connection),
    )

    def chunks() -> Iterator[bytes]:
        try:
            for event in events:
                yield json.dumps(docker_event(event)).encode() + b"\n"
        finally:
            close = getattr(events, "close", None)  # the journal's files, at once
            if close is not None:
                close()

    return Stream(chunks())


def register(router: Router, engine: Engine) -> None:
    """Add ``GET /events`` (operator: every tenant's events) to ``router``."""

    @router.route("GET", "/events")
    def events(request: Request) -> Stream:
        return event_stream(engine, request, tenant=None)
