"""The engine's event journal: what changed, when, as `docker events` reports it.

Every process that changes something (``hpctl``, the host agent, the Docker API daemon)
appends one JSON line per change to ``<root>/events/events.log``, under a short file
lock, and rotates the file to ``events.log.1`` past ``max_bytes`` (so the journal is
bounded at about twice that). Readers read both files and follow the current one, so
every process sees the others' events. Recording never fails a change: a journal that
cannot be written is logged and skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.errors import InvalidSpec
from engine.fsutil import atomic_write_json, file_lock, read_json
from engine.logs.k8s_file import parse_time

_log = logging.getLogger(__name__)

TYPES = ("container", "image", "volume", "network")
"""The types the engine records."""
DOCKER_TYPES = (*TYPES, "daemon", "plugin", "service", "node", "secret", "config", "builder")
"""Every type a Docker client may filter on (the others never occur here: they match nothing)."""
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
FILTER_KEYS = ("type", "event", "container", "image", "label", "volume", "network", "scope", "tenant")


@dataclass(frozen=True)
class Event:
    """One change: ``type`` (container, image, volume, network), ``action`` (start, die, tag...),
    the object's ``id``, its ``attributes`` (name, image, labels, exitCode...), the ``tenant``
    that owns it ('' for the operator's base images) and the time in nanoseconds."""

    type: str
    action: str
    id: str
    attributes: dict[str, str] = field(default_factory=dict)
    tenant: str = ""
    time_nano: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The journal's compact line."""
        return {
            "t": self.time_nano,
            "type": self.type,
            "action": self.action,
            "id": self.id,
            "attrs": self.attributes,
            "tenant": self.tenant,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """A journal line back as an Event (KeyError/TypeError for a malformed one)."""
        return cls(
            type=str(data["type"]),
            action=str(data["action"]),
            id=str(data["id"]),
            attributes={str(k): str(v) for k, v in dict(data.get("attrs") or {}).items()},
            tenant=str(data.get("tenant") or ""),
            time_nano=int(data["t"]),
        )

    @property
    def base_action(self) -> str:
        """The action without its detail: ``exec_start: sh -c x`` -> ``exec_start``."""
        return self.action.split(":", 1)[0]


def parse_event_time(value: str, now: float | None = None) -> int:
    """A since/until value as nanoseconds: a Unix time (``1700000000.5``), RFC 3339, or a
    duration before now (``10m``, ``2h``, ``30s``). Raises InvalidSpec naming the value."""
    text = value.strip()
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if m:
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return int((now - float(m.group(1)) * scale) * 1e9)
    m = re.fullmatch(r"(\d+)(?:\.(\d{1,9}))?", text)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))
    try:
        moment = parse_time(text)
    except InvalidSpec:
        raise InvalidSpec(
            f"invalid time {value!r}: use a Unix time (1700000000), RFC 3339 "
            "(2026-01-02T03:04:05Z) or a duration like 10m"
        ) from None
    frac = re.search(r"\.(\d+)", text)
    nanos = int((frac.group(1) if frac else "0")[:9].ljust(9, "0"))
    return int(moment.replace(microsecond=0).timestamp()) * 1_000_000_000 + nanos


def format_event_time(time_nano: int) -> str:
    """RFC 3339 with nanoseconds, as `docker events` prints times."""
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


@dataclass(frozen=True)
class EventFilter:
    """Which events to show: values of one key are alternatives, keys must all match.

    ``container`` matches a container's id (or id prefix) or name, also on the events of
    other types that name it (a network connect); ``image`` an image event's id or name or
    a container's image; ``label`` ``key`` or ``key=value`` on the attributes; ``tenant``
    the owner (the tenant door always sets it).
    """

    terms: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, filters: Mapping[str, Iterable[str]] | None, *, tenant: str | None = None) -> EventFilter:
        """From Docker's filters ({"type": ["container"]}, or {"type": {"container": true}});
        InvalidSpec for an unknown key or type. ``tenant`` confines the result to that tenant."""
        terms: dict[str, frozenset[str]] = {}
        for key, values in (filters or {}).items():
            if key not in FILTER_KEYS or key == "tenant":
                raise InvalidSpec(f"invalid filter {key!r}: use one of {', '.join(FILTER_KEYS[:-1])}")
            chosen = [v for v, on in values.items() if on] if isinstance(values, Mapping) else list(values)
            if not all(isinstance(v, str) for v in chosen):
                raise InvalidSpec(f"invalid filter {key!r}: values must be strings")
            if key == "type":
                for v in chosen:
                    if v not in DOCKER_TYPES:
                        raise InvalidSpec(f"invalid filter type={v!r}: use one of {', '.join(TYPES)}")
            if chosen:
                terms[key] = frozenset(chosen)
        if tenant is not None:
            terms["tenant"] = frozenset({tenant})
        return cls(terms)

    @classmethod
    def from_args(cls, items: Iterable[str], *, tenant: str | None = None) -> EventFilter:
        """From `--filter key=value` arguments; InvalidSpec for one without '='."""
        parsed: dict[str, list[str]] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidSpec(f"invalid filter {item!r}: use KEY=VALUE, e.g. type=container")
            parsed.setdefault(key, []).append(value)
        return cls.parse(parsed, tenant=tenant)

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes every key of this filter."""
        return all(self._match(key, values, event) for key, values in self.terms.items())

    @staticmethod
    def _match(key: str, values: frozenset[str], e: Event) -> bool:
        attrs = e.attributes
        if key == "type":
            return e.type in values
        if key == "event":
            return e.base_action in values or e.action in values
        if key == "tenant":
            return e.tenant in values
        if key == "scope":  # every event of an engine is local (no swarm)
            return "local" in values
        if key == "label":
            return any(
                (attrs.get(k) == v) if sep else (k in attrs)
                for k, sep, v in (item.partition("=") for item in values)
            )
        if key == "container":
            if e.type == "container":
                names = {attrs.get("name", "")}
                return any(v == e.id or (len(v) >= 1 and e.id.startswith(v)) or v in names for v in values)
            return attrs.get("container", "") in values
        if key == "image":
            if e.type == "image":
                return e.id in values or attrs.get("name", "") in values
            return e.type == "container" and attrs.get("image", "") in values
        # volume / network: the event's object or, for a connect, the network's id or name
        return e.type == key and (e.id in values or attrs.get("name", "") in values)


class EventJournal:
    """The append-only, rotated event log of one engine root (see the module docstring)."""

    def __init__(
        self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._clock = clock

    @property
    def current(self) -> Path:
        """The file new events are appended to."""
        return self.directory / "events.log"

    @property
    def previous(self) -> Path:
        """The rotated file (the older events)."""
        return self.directory / "events.log.1"

    def record(
        self,
        type: str,
        action: str,
        id: str,
        attributes: Mapping[str, str] | None = None,
        *,
        tenant: str = "",
    ) -> Event | None:
        """Append one event; returns it, or None when the journal could not be written."""
        event = Event(type, action, id, dict(attributes or {}), tenant, self._clock())
        line = json.dumps(event.to_dict(), separators=(",", ":")).encode() + b"\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with file_lock(self.directory / ".lock"):
                with contextlib.suppress(FileNotFoundError):
                    if self.current.stat().st_size + len(line) > self.max_bytes:
                        os.replace(self.current, self.previous)
                fd = os.open(self.current, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as exc:
            _log.warning("event %s %s of %s not recorded: %s", type, action, id[:12], exc)
            return None
        return event

    @property
    def purged_file(self) -> Path:
        """When each purged tenant was purged: {tenant: time in ns}."""
        return self.directory / "purged.json"

    def forget_tenant(self, tenant: str) -> None:
        """A purged tenant's events stay for the operator, but a tenant of the same name made
        later never reads them: its reads start after this moment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with file_lock(self.directory / ".lock"):
            purged = self._purged()
            purged[tenant] = self._clock()
            atomic_write_json(self.purged_file, purged, mode=0o600)

    def _purged(self) -> dict[str, int]:
        try:
            data = read_json(self.purged_file)
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def read(
        self,
        event_filter: EventFilter | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        follow: bool = False,
        stop: Callable[[], bool] = lambda: False,
        poll_seconds: float = 0.1,
    ) -> Iterator[Event]:
        """Events from ``since`` (ns; default: the oldest kept) to ``until`` (ns), oldest first.

        Without ``follow`` only what is recorded now; with it, new events as other
        processes append them, until ``until`` passes or ``stop()`` says so. A read
        confined to a tenant starts after that tenant's last purge (see forget_tenant).
        """
        match = event_filter or EventFilter()
        floor = max((self._purged().get(t, -1) + 1 for t in match.terms.get("tenant", ())), default=None)
        if floor is not None:
            since = floor if since is None else max(since, floor)

        def wanted(e: Event) -> bool:
            return (since is None or e.time_nano >= since) and match.matches(e)

        live = follow and (until is None or until > self._clock())
        with contextlib.ExitStack() as files:
            handle: IO[bytes] | None = None
            pending = b""
            for path in (self.previous, self.current):
                with contextlib.suppress(FileNotFoundError):
                    opened = files.enter_context(open(path, "rb"))
                    data = opened.read()
                    if path == self.current:  # a line being written now is finished by _follow
                        handle, cut = opened, data.rfind(b"\n") + 1
                        data, pending = data[:cut], data[cut:]
                    for event in _parse(data):
                        if until is not None and event.time_nano > until:
                            return
                        if wanted(event):
                            yield event
            if not live:
                return
            yield from self._follow(handle, pending, files, wanted, until, stop, poll_seconds)

    def _follow(
        self,
        handle: IO[bytes] | None,
        pending: bytes,
        files: contextlib.ExitStack,
        wanted: Callable[[Event], bool],
        until: int | None,
        stop: Callable[[], bool],
        poll_seconds: float,
    ) -> Iterator[Event]:
        """Yield what is appended to ``handle`` (the current file), then to the files after it.

        A rotation is noticed by the current path's inode changing. The old file's tail is
        read first; when it was rotated twice meanwhile, the file between (now events.log.1)
        is read whole. A reader lagging three rotations behind loses the middle one: the
        journal is bounded.
        """
        while not stop() and (until is None or self._clock() <= until):
            chunk = handle.read() if handle is not None else b""
            if not chunk and self._rotated(handle):
                chunk = handle.read() if handle is not None else b""  # appended before the rotation
                between = self._between(handle)
                handle = files.enter_context(open(self.current, "rb"))  # noqa: SIM115 (closed with files)
                chunk, pending = pending + chunk + b"\n" + between, b""
            elif not chunk:
                time.sleep(poll_seconds)
                continue
            data = pending + chunk
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            for event in _parse(data[:cut]):
                if until is not None and event.time_nano > until:
                    return
                if wanted(event):
                    yield event

    def _rotated(self, handle: IO[bytes] | None) -> bool:
        """Whether events.log is no longer the file ``handle`` reads (False while there is none)."""
        try:
            current = os.stat(self.current).st_ino
        except FileNotFoundError:
            return False
        return handle is None or current != os.fstat(handle.fileno()).st_ino

    def _between(self, handle: IO[bytes] | None) -> bytes:
        """events.log.1 when it is not ``handle``'s file (two rotations since the last read)."""
        if handle is None:
            return b""
        try:
            with open(self.previous, "rb") as previous:
                if os.fstat(previous.fileno()).st_ino == os.fstat(handle.fileno()).st_ino:
                    return b""
                return previous.read()
        except FileNotFoundError:
            return b""


def _parse(data: bytes) -> Iterator[Event]:
    for raw in data.splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            yield Event.from_dict(json.loads(raw))
