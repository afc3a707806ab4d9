"""The host agent's log follower: follows only the containers someone watches.

Runs as a thread of ``manage.py hostagent`` (:func:`start_in_thread`) with its own
asyncio loop on this host's own layer (:func:`hostpanel.logstream.layer.host_layer`:
Redis pub/sub under ``hostlogs.<host>.``; an enrolled agent connects with its own
Redis user, which may use only those channels). A viewer's consumer sends
``logs.watch`` to the group ``WATCH_GROUP`` there with the replica and container
name; that is a lease, renewed every LEASE_RENEW seconds while the viewer stays and
dropped LEASE_SECONDS after the last renewal. A watch that names ``reply_to`` also
asks for backfill (the last ``tail`` lines, or the lines after ``after``), sent to
that channel only after the follower is positioned, so backfill plus live lines
leave no gap (overlap is removed by cursor in the consumer).

Per watched container (however many viewers it has: one lease per replica) one
thread follows the conmon log file with ``engine.logs.k8s_file.follow_blocks`` (rotation
handled there); it only reads the file, so conmon and the container are never
slowed. It reads blocks of records and decodes only as many lines as publishing may
send (``publish.RATE_LINES`` a second, the newest of each block: ``reading.Skimmer``);
the others of a flood are counted in C as skipped, with cursors unchanged. It sleeps on
inotify (the log's directory), so a write wakes it at once (WAKE_FALLBACK_SECONDS bounds
a missed event). Lines go into a bounded deque (the
newest PENDING_LINES); when the thread has caught up with the file, or NOTIFY_LINES
lines are waiting, it wakes the loop, which publishes everything pending as one
batch per container through ``publish.apublish_lines`` on the host's layer (counting what the deque
dropped as skipped). So a quiet container's line leaves at once, and a flood goes
out in batches of many lines: one group send each, not one per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags

from engine.engine import Engine
from engine.errors import EngineError
from engine.logs.k8s_file import follow_blocks
from hostpanel.logstream import publish, reading
from hostpanel.logstream.layer import host_layer
from hostpanel.logstream.watch import LEASE_SECONDS, WATCH_GROUP

log = logging.getLogger(__name__)

WAKE_FALLBACK_SECONDS = 0.5  # longest sleep of a follow thread without an inotify event
HOUSEKEEPING_SECONDS = 1.0  # how often the loop expires leases when nothing is published
PENDING_LINES = 5000
NOTIFY_LINES = 1000  # a flood wakes the loop every this many lines even before catching up
FLOOD_NAP_SECONDS = 0.02  # a follow thread past the rate reads at most this often
READ_BYTES = 1 << 20  # read at once from the log when behind (a flood's lines past the rate are only counted)
_WAKE_MASK = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE


@dataclass
class Watch:
    """One followed container: its follow thread and the lines it read but did not publish yet."""

    replica: str
    container_id: str
    log: Path
    max_files: int
    expires: float
    stop: threading.Event = field(default_factory=threading.Event)
    pending: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=PENDING_LINES))
    read: int = 0  # lines read so far (pending ones included)
    taken: int = 0  # lines taken from pending (or dropped from it) so far
    lock: threading.Lock = field(default_factory=threading.Lock)
    notify: Callable[[], None] = lambda: None  # wakes the publishing loop (called from the thread)

    def start(self) -> None:
        offset, counter = reading.follow_start(self.log)
        inotify = INotify()
        inotify.add_watch(str(self.log.parent), _WAKE_MASK)

        def wait(_poll: float) -> None:
            """Called by ``follow`` once it has read everything: publish, then sleep until a write."""
            if self.read > self.taken:
                self.notify()
            inotify.read(timeout=int(WAKE_FALLBACK_SECONDS * 1000))

        def run() -> None:
            skimmer = reading.Skimmer(counter=counter)
            tokens, refilled = float(publish.RATE_LINES), time.monotonic()
            try:
                for block in follow_blocks(
                    self.log,
                    offset,
                    self.stop.is_set,
                    max_files=self.max_files,
                    sleep=wait,
                    last_time=lambda: skimmer.counter.last_time,
                    read_bytes=READ_BYTES,
                ):
                    now = time.monotonic()
                    tokens = min(float(publish.RATE_LINES), tokens + (now - refilled) * publish.RATE_LINES)
                    refilled = now
                    lines, skipped = skimmer.feed(block, int(tokens))
                    tokens -= len(lines)
                    with self.lock:
                        before = self.read - self.taken
                        self.pending.extend(lines)
                        self.read += len(lines) + skipped
                        flood = before // NOTIFY_LINES != (self.read - self.taken) // NOTIFY_LINES
                    if flood:
                        self.notify()
                    if skipped:  # past the rate: let the flood gather into one big block, mostly counted
                        self.stop.wait(FLOOD_NAP_SECONDS)
            except Exception:
                log.exception("following the log of replica %s failed", self.replica)
            finally:
                inotify.close()

        threading.Thread(target=run, name=f"logs-{self.replica}", daemon=True).start()

    def take(self) -> tuple[list[dict[str, str]], int]:
        """The pending lines, and how many the bounded deque dropped since the last take."""
        with self.lock:
            lines = list(self.pending)
            self.pending.clear()
            dropped = self.read - self.taken - len(lines)
            self.taken = self.read
        return lines, dropped


class LogFollower:
    """Leases, follow threads and publishing for one host's engine, on that host's layer
    (``redis_url``: an enrolled agent's own Redis user; else the panel's)."""

    def __init__(self, engine: Engine, host_name: str, redis_url: str = "") -> None:
        self.engine = engine
        self.host_name, self.redis_url = host_name, redis_url
        self.layer: Any = None  # the host's layer, while running
        self.watches: dict[str, Watch] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake = asyncio.Event()

    def _notify(self) -> None:
        """Wake :meth:`run` to publish (thread-safe; a no-op before it runs)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.wake.set)

    def watch(self, replica: str, container: str) -> Watch | None:
        """Start (or renew the lease of) following ``container`` for ``replica``."""
        try:
            found = self.engine.get(container)
        except EngineError as exc:
            log.info("logs of replica %s: %s", replica, exc)
            return None
        current = self.watches.get(replica)
        if current is not None and current.container_id == found.id:
            current.expires = time.monotonic() + LEASE_SECONDS
            return current
        if current is not None:  # the replica's container was replaced: follow the new one
            current.stop.set()
        new = Watch(
            replica=replica,
            container_id=found.id,
            log=self.engine.containers.log_path(found),
            max_files=found.log_max_files,
            expires=time.monotonic() + LEASE_SECONDS,
            notify=self._notify,
        )
        new.start()
        self.watches[replica] = new
        return new

    def expire(self, now: float) -> None:
        for replica, watch in list(self.watches.items()):
            if watch.expires < now:
                watch.stop.set()
                del self.watches[replica]

    def stop_all(self) -> None:
        for watch in self.watches.values():
            watch.stop.set()
        self.watches.clear()

    async def flush(self) -> None:
        """Publish each watch's pending lines: one group send per MAX_BATCH_LINES lines."""
        for watch in list(self.watches.values()):
            lines, dropped = watch.take()
            step = publish.MAX_BATCH_LINES
            for i in range(0, max(len(lines), 1), step):
                await publish.apublish_lines(
                    "container", watch.replica, lines[i : i + step], dropped=dropped, layer=self.layer
                )
                dropped = 0

    async def handle(self, layer: Any, message: dict[str, Any]) -> None:
        """A ``logs.watch`` message: lease, then backfill to ``reply_to`` if asked."""
        replica, container = str(message.get("replica", "")), str(message.get("container", ""))
        if not replica.isdigit() or not container:
            return
        watch = await asyncio.to_thread(self.watch, replica, container)
        reply_to = message.get("reply_to")
        if not reply_to:
            return
        if watch is None:
            answer = {
                "type": "logs.backfill",
                "lines": [],
                "skipped": 0,
                "lost": False,
                "error": f"no container {container} on this host (yet)",
            }
        else:
            tail = max(0, min(int(message.get("tail") or 0), reading.MAX_BACKFILL_LINES))
            after = message.get("after") or None
            try:
                result = await asyncio.to_thread(reading.backfill, watch.log, watch.max_files, tail, after)
                answer = result.to_message()
            except (ValueError, OSError) as exc:
                answer = {
                    "type": "logs.backfill",
                    "lines": [],
                    "skipped": 0,
                    "lost": False,
                    "error": str(exc),
                }
        await layer.send(str(reply_to), answer)

    async def run(self, stop: threading.Event) -> None:
        layer = self.layer = host_layer(self.host_name, self.redis_url)
        self.loop = asyncio.get_running_loop()
        channel = await layer.new_channel()
        await layer.group_add(WATCH_GROUP, channel)
        receiver = asyncio.create_task(self._receive(layer, channel))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), HOUSEKEEPING_SECONDS)
                self.wake.clear()
                await self.flush()
                self.expire(time.monotonic())
                if receiver.done():
                    receiver.result()  # raise what killed it
        finally:
            self.loop = None
            receiver.cancel()
            self.stop_all()
            await layer.group_discard(WATCH_GROUP, channel)

    async def _receive(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            try:
                await self.handle(layer, message)
            except Exception:
                log.exception("log watch message failed: %r", message)


def start_in_thread(
    engine: Engine, host_name: str, stop: threading.Event, redis_url: str = ""
) -> threading.Thread:
    """Run the follower of this host in a daemon thread until ``stop`` is set; restarts it after errors.
    ``redis_url``: an enrolled agent's own (its credentials); else the panel's Channels Redis."""

    def main() -> None:
        while not stop.is_set():
            try:
                asyncio.run(LogFollower(engine, host_name, redis_url).run(stop))
            except Exception:
                log.exception("log follower failed; restarting in 2 s")
                stop.wait(2.0)

    thread = threading.Thread(target=main, name="log-follower", daemon=True)
    thread.start()
    return thread
