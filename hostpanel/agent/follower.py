"""The host agent's log follower: follows only the containers someone watches.

Runs as a thread of ``manage.py hostagent`` (:func:`start_in_thread`) with its own
asyncio loop on the Channels layer. A viewer's consumer sends ``logs.watch`` to the
group ``logagent.<host>`` (see :func:`agent_group`) with the replica and container
name; that is a lease, renewed every LEASE_RENEW seconds while the viewer stays and
dropped LEASE_SECONDS after the last renewal. A watch that names ``reply_to`` also
asks for backfill (the last ``tail`` lines, or the lines after ``after``), sent to
that channel only after the follower is positioned, so backfill plus live lines
leave no gap (overlap is removed by cursor in the consumer).

Per watched container one thread follows the conmon log file with
``engine.logs.k8s_file.follow`` (rotation handled there); it only reads the file,
so conmon and the container are never slowed. Lines go into a bounded deque (the
newest PENDING_LINES); every FLUSH_SECONDS the loop publishes what is there through
``publish.apublish_lines``, counting what the deque dropped as skipped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.engine import Engine
from engine.errors import EngineError
from engine.logs.k8s_file import follow
from hostpanel.logstream import publish, reading

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
LEASE_RENEW = 20.0
FLUSH_SECONDS = 0.03
POLL_SECONDS = 0.02  # how often an idle follower looks for new output (an fstat)
PENDING_LINES = 5000


def agent_group(host_name: str) -> str:
    """The Channels group the log follower of ``host_name`` listens on."""
    return "logagent." + re.sub(r"[^A-Za-z0-9_\-.]", "_", host_name)[:80]


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

    def start(self) -> None:
        offset, counter = reading.follow_start(self.log)

        def run() -> None:
            try:
                for line in follow(
                    self.log, offset, self.stop.is_set, poll_interval=POLL_SECONDS, max_files=self.max_files
                ):
                    item = {
                        "cursor": counter.next(line.time),
                        "stream": line.stream,
                        "time": line.time,
                        "text": line.text,
                    }
                    with self.lock:
                        self.pending.append(item)
                        self.read += 1
            except Exception:
                log.exception("following the log of replica %s failed", self.replica)

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
    """Leases, follow threads and publishing for one host's engine."""

    def __init__(self, engine: Engine, host_name: str) -> None:
        self.engine = engine
        self.group = agent_group(host_name)
        self.watches: dict[str, Watch] = {}

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
        for watch in list(self.watches.values()):
            lines, dropped = watch.take()
            if lines or dropped:
                await publish.apublish_lines("container", watch.replica, lines, dropped=dropped)

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
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = await layer.new_channel("logagent.")
        await layer.group_add(self.group, channel)
        receiver = asyncio.create_task(self._receive(layer, channel))
        joined = time.monotonic()
        try:
            while not stop.is_set():
                await asyncio.sleep(FLUSH_SECONDS)
                await self.flush()
                now = time.monotonic()
                self.expire(now)
                if now - joined > 600:  # keep the group membership from expiring
                    await layer.group_add(self.group, channel)
                    joined = now
                if receiver.done():
                    receiver.result()  # raise what killed it
        finally:
            receiver.cancel()
            self.stop_all()
            await layer.group_discard(self.group, channel)

    async def _receive(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            try:
                await self.handle(layer, message)
            except Exception:
                log.exception("log watch message failed: %r", message)


def start_in_thread(engine: Engine, host_name: str, stop: threading.Event) -> threading.Thread:
    """Run the follower of this host in a daemon thread until ``stop`` is set; restarts it after errors."""

    def main() -> None:
        while not stop.is_set():
            try:
                asyncio.run(LogFollower(engine, host_name).run(stop))
            except Exception:
                log.exception("log follower failed; restarting in 2 s")
                stop.wait(2.0)

    thread = threading.Thread(target=main, name="log-follower", daemon=True)
    thread.start()
    return thread
