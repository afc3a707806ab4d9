"""What the Docker daemon does around the engine's containers: waits, ``--rm``, restart policies.

One :class:`Lifecycle` per served engine. It resolves references the way dockerd does (name, id,
id prefix; anything else is ``No such container: <ref>``), keeps the Docker side record of each
container, watches the containers that need it (``AutoRemove``, a restart policy, a health check)
from a thread each, and answers ``wait`` for every condition. State changes made through the API
wake waiters at once; changes made outside it (``hpctl``) are seen within a poll interval.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from engine.dockerapi import health, record
from engine.dockerapi.http import APIError
from engine.dockerapi.record import DockerRecord
from engine.errors import EngineError, InvalidSpec, NotFound
from engine.runtime.model import ALIVE, Container

if TYPE_CHECKING:
    from engine.engine import Engine

_log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""How often a waiter looks again for a change made outside the API."""

READERS_GRACE_SECONDS = 10.0
"""How long ``--rm`` waits for attached readers to drain the output before removing."""

RESTART_BACKOFF_MAX = 60.0
EXIT_CODES_KEPT = 10_000
"""Exit codes remembered for ``wait`` on containers already removed (the newest ones)."""
ACTIVE = ("created", "running", "paused")
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def find_container(engine: Engine, ref: str) -> Container:
    """The container named by ``ref`` (name, ``/name``, id or unique id prefix), or a 404
    ``No such container: <ref>``."""
    name = ref[1:] if ref.startswith("/") else ref
    try:
        return engine.get(name)
    except (NotFound, InvalidSpec):
        raise APIError(404, f"No such container: {ref}") from None


class Lifecycle:
    """Docker semantics over one engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._last_exit: OrderedDict[str, int] = OrderedDict()  # for waits that outlive the container
        self._readers: dict[str, int] = {}
        self._watched: set[str] = set()
        self._removing: set[str] = set()  # removals under way: a `removed` wait outlasts their volumes
        self._record_lock = threading.RLock()
        self._containers_dir = str(engine.paths.containers)  # `docker ps` joins it for every container

    # ---- lookups and records ------------------------------------------------------
    def find(self, ref: str) -> Container:
        """The container named by ``ref`` (name, ``/name``, id or unique id prefix), or a 404."""
        return find_container(self.engine, ref)

    def current(self, cid: str) -> Container | None:
        """The container's record now, or None once it is removed."""
        try:
            return self.engine.get(cid)
        except NotFound:
            return None

    def directory(self, cid: str) -> str:
        """The container's directory (its Docker record lives there), as a plain path string."""
        return f"{self._containers_dir}/{cid}"

    def record(self, cid: str) -> DockerRecord:
        """The container's Docker side record."""
        return record.load(self.directory(cid))

    def save(self, cid: str, rec: DockerRecord) -> None:
        """Store the container's Docker side record."""
        with self._record_lock:
            record.save(self.directory(cid), rec)

    def update(self, cid: str, change: Callable[[DockerRecord], None]) -> DockerRecord:
        """Read, change and store the container's record in one step (watchers share it)."""
        with self._record_lock:
            rec = record.load(self.directory(cid))
            change(rec)
            record.save(self.directory(cid), rec)
            return rec

    def _note_exit(self, cid: str, code: int) -> None:
        with self._cond:
            self._last_exit[cid] = code
            self._last_exit.move_to_end(cid)
            while len(self._last_exit) > EXIT_CODES_KEPT:
                self._last_exit.popitem(last=False)

    # ---- change notification ----------------------------------------------------------
    def changed(self) -> None:
        """Wake every waiter: a container started, stopped or went away."""
        with self._cond:
            self._cond.notify_all()

    def _pause(self) -> None:
        self.nap(POLL_SECONDS)

    def nap(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a change (:meth:`changed`) ends it early."""
        with self._cond:
            self._cond.wait(seconds)

    @contextlib.contextmanager
    def reading(self, cid: str) -> Iterator[None]:
        """Mark an attached reader of ``cid``'s output, so ``--rm`` lets it finish first."""
        with self._cond:
            self._readers[cid] = self._readers.get(cid, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._readers[cid] -= 1
                if not self._readers[cid]:
                    del self._readers[cid]
                self._cond.notify_all()

    # ---- waiting --------------------------------------------------------------------
    def wait(self, cid: str, condition: str, baseline: Container) -> int:
        """Block until ``condition`` holds for the container; its exit code.

        ``not-running``: now if it does not run, else at its exit. ``next-exit``: the next exit
        after ``baseline`` (a created or stopped container is waited for through its next start).
        ``removed``: once it exited and is gone.
        """
        if condition == "not-running" and baseline.status not in ALIVE:
            return baseline.exit_code or 0
        code = self._wait_exit(cid, baseline)
        if condition == "removed":
            while self.current(cid) is not None or cid in self._removing:
                self._pause()
        return code

    def _wait_exit(self, cid: str, baseline: Container) -> int:
        while True:
            container = self.current(cid)
            if container is None:
                return self._last_exit.get(cid, baseline.exit_code or 0)
            if container.status in ACTIVE:
                with contextlib.suppress(NotFound):
                    # returns at the exit (at once for a created container whose monitor died)
                    container = self.engine.wait(cid)
                    if container.status not in ACTIVE:
                        return container.exit_code or 0
            elif baseline.status == "running" or container.started_at != baseline.started_at:
                return container.exit_code or 0
            self._pause()

    # ---- watching: --rm, restart policies, health checks ---------------------------------
    def resume(self) -> None:
        """After the daemon (re)starts: watch the running containers that need it again, and remove
        the ``--rm`` containers that exited while nobody watched."""
        for container in self.engine.list(all=True):
            if container.status in ALIVE:
                self.watch(container.id)
            elif container.status != "created" and self.record(container.id).auto_remove:
                with contextlib.suppress(EngineError):
                    self.remove(container.id, force=True, volumes=True)

    def watch(self, cid: str) -> None:
        """Start watching a running container if its record asks for it (idempotent)."""
        rec = self.record(cid)
        if rec.auto_remove or rec.policy.name != "no":
            with self._cond:
                if cid in self._watched:
                    return
                self._watched.add(cid)
            threading.Thread(target=self._watch, args=(cid,), name=f"watch-{cid[:12]}", daemon=True).start()
        if rec.check is not None:
            health.start(self, cid)

    def _watch(self, cid: str) -> None:
        delay = 0.1
        try:
            while True:
                container = self.engine.wait(cid)
                if container.status in ALIVE:
                    continue
                if container.status != "created":  # created: its monitor died before a start
                    rec = self.record(cid)
                    code = container.exit_code or 0
                    self._note_exit(cid, code)
                    self.changed()
                    if rec.auto_remove:
                        self._remove_after_readers(cid, rec)
                        return
                    if self._should_restart(rec, code):
                        time.sleep(delay)
                        delay = min(delay * 2, RESTART_BACKOFF_MAX)
                        self._restart(cid)
                        continue
                if self._leave(cid, container.started_at):
                    return
        except NotFound:
            pass
        except EngineError as exc:
            _log.warning("watching container %s: %s", cid[:12], exc)
        finally:
            with self._cond:
                self._watched.discard(cid)
            self.changed()

    def _leave(self, cid: str, handled_start: str) -> bool:
        """Stop watching, unless the container was started again meanwhile (then keep going).

        Checked under the lock :meth:`watch` takes, so a start made through the API either
        finds this watcher still on duty or starts the next one: no run goes unwatched.
        """
        with self._cond:
            container = self.current(cid)
            if container is not None and (container.status in ALIVE or container.started_at != handled_start):
                return False
            self._watched.discard(cid)
            return True

    def _restart(self, cid: str) -> None:
        """Start the container again for its restart policy (unless someone stopped it meanwhile)."""
        current = self.current(cid)
        if current is None or current.status in ALIVE or self.record(cid).manually_stopped:
            return
        self.engine.start(cid)
        rec = self.update(cid, _count_restart)
        self.changed()
        if rec.check is not None:
            health.start(self, cid)

    @staticmethod
    def _should_restart(rec: DockerRecord, code: int) -> bool:
        policy = rec.policy
        if rec.manually_stopped or policy.name == "no":
            return False
        if policy.name == "on-failure":
            return code != 0 and (
                not policy.maximum_retry_count or rec.restart_count < policy.maximum_retry_count
            )
        return True

    def _remove_after_readers(self, cid: str, rec: DockerRecord) -> None:
        deadline = time.monotonic() + READERS_GRACE_SECONDS
        with self._cond:
            while self._readers.get(cid) and time.monotonic() < deadline:
                self._cond.wait(POLL_SECONDS)
        self.remove(cid, force=True, volumes=True, rec=rec)

    def remove(self, cid: str, *, force: bool, volumes: bool, rec: DockerRecord | None = None) -> None:
        """Remove a container (and, with ``volumes``, its anonymous volumes); wakes waiters."""
        rec = rec or self.record(cid)
        with self._cond:
            self._removing.add(cid)
        try:
            with contextlib.suppress(NotFound):
                container = self.engine.remove(cid, force=force)
                self._note_exit(cid, container.exit_code or 0)
            if volumes:
                for name in rec.anonymous_volumes:
                    with contextlib.suppress(EngineError):
                        self.engine.volume_remove(name, force=True)
        finally:
            with self._cond:
                self._removing.discard(cid)
            self.changed()


def _count_restart(rec: DockerRecord) -> None:
    rec.restart_count += 1
