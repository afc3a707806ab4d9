"""Deleting container directories off the caller's path: renamed aside now, deleted later.

Deleting a container's directory (bundle, overlay upper and work, log, etc. files: tens to
thousands of unlinks and rmdirs) was most of `rm`'s time on a busy disk. :meth:`Trash.discard`
renames the directory into ``<root>/trash/`` instead. The trash is on the same file system as
``<root>/containers/``, so the rename is atomic: the moment it returns, the container is gone
from every listing and lookup, and its name can be taken again. A worker thread then deletes it.

- Nothing may be mounted below a directory when it is discarded (the caller unmounts the
  rootfs overlay and the secrets tmpfs first): :meth:`Trash.discard` refuses otherwise, and
  the worker skips an entry with a mount below it (it stays for a later sweep), so a delete
  never reaches into a mounted file system.
- Entries are deleted with ``shutil.rmtree``'s file-descriptor walk, which never follows a
  symlink: a container may have left links (to anywhere on the host) and deep trees in its
  upper directory, and only the trash entry's own files go. A tree deeper than rmtree's
  recursion allows is made shallow first by renames inside the entry (:func:`delete_tree`).
  Only single names directly in the trash directory are ever deleted, and a ContainerStore
  accepts only its own root's ``trash/``.
- The process deleting an entry holds an flock on its directory (taken before the rename), so
  two engine processes on one root never delete the same entry, and the kernel releases the
  lock of a process that died.
- A long-lived process (the operator daemon, the host agent) deletes in the background. A
  short-lived one (`hpctl rm` without the daemon) waits at exit for what it discarded itself,
  so it leaves nothing behind (the same work as before, after its output). What a crash or a
  kill left in the trash is queued by the next Engine opened on the root (:meth:`Trash.sweep`:
  one bounded directory read on the way, no deleting) and deleted on its worker; nobody waits
  for those at exit, and a process that exits first leaves the rest to the next sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RuntimeFailure
from engine.runtime import mounts

SWEEP_LIMIT = 64
"""At most this many leftovers are queued per sweep, so opening an engine stays cheap."""

_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


IDLE_SECONDS = 10.0
"""How long the worker waits for more to delete before it ends."""

LIFT_DEPTH = 100
"""Directories this deep in an entry are moved up to its top before shutil.rmtree retries."""


def delete_tree(path: Path) -> None:
    """Delete ``path`` and everything below it without following symlinks; errors leave the rest.

    ``shutil.rmtree``'s file-descriptor walk (openat with O_NOFOLLOW, each directory checked to
    be the one listed) never follows a link, and ``path`` being a link is refused. Its walk
    recurses, so a tree deeper than Python's recursion limit (a container can make one) is
    first made shallow by moving its deep directories up (:func:`_lift_deep_directories`).
    What an error leaves stays in the trash for the next sweep. Raises RuntimeFailure on a
    platform whose rmtree would follow links.
    """
    if not shutil.rmtree.avoids_symlink_attacks:
        raise RuntimeFailure("shutil.rmtree follows symlinks on this platform; refusing to delete with it")
    while True:
        try:
            shutil.rmtree(path, ignore_errors=True)
            return
        except RecursionError:
            if not _lift_deep_directories(path):
                raise


def _lift_deep_directories(top: Path, depth: int = LIFT_DEPTH) -> int:
    """Move every directory ``depth`` levels below ``top`` up into ``top``; how many were moved.

    Only renames within the tree, relative to directory fds opened with O_NOFOLLOW, so a link
    is moved as a name at most, never followed; at most ``depth`` fds are open at once.
    """
    top_fd = os.open(top, _OPEN_DIRECTORY)
    stack: list[tuple[int, list[str]]] = [(top_fd, [])]  # every fd open is on it, to be closed
    moved = 0
    try:
        stack[0][1].extend(_subdirectories(top_fd))
        while stack:
            fd, names = stack[-1]
            if not names:
                stack.pop()
                os.close(fd)
                continue
            name = names.pop()
            if len(stack) >= depth:
                os.rename(name, f"lifted.{secrets.token_hex(8)}", src_dir_fd=fd, dst_dir_fd=top_fd)
                moved += 1
                continue
            try:
                child = os.open(name, _OPEN_DIRECTORY, dir_fd=fd)
            except OSError:  # gone, or not a directory after all: rmtree's business
                continue
            stack.append((child, []))
            stack[-1][1].extend(_subdirectories(child))
    finally:
        for fd, _names in stack:
            os.close(fd)
    return moved


def _subdirectories(fd: int) -> list[str]:
    """The names of the real directories (not links to one) in the directory open at ``fd``."""
    with os.scandir(fd) as entries:
        return [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]


@dataclass
class _Entry:
    """A trash entry to delete: its name, the locked directory fd if this process discarded it."""

    name: str
    fd: int | None
    own: bool


class Trash:
    """A directory of things to delete, and the worker that deletes them (see the module doc).

    ``delete`` and ``mounted_under`` are the seams unit tests replace. Raises ValueError when
    ``directory`` is "/".
    """

    def __init__(
        self,
        directory: Path,
        *,
        delete: Callable[[Path], None] = delete_tree,
        mounted_under: Callable[[Path], list[Path]] = mounts.mounted_under,
    ) -> None:
        # Absolute once and for all: a later chdir must not move what gets deleted.
        self.directory = Path(os.path.abspath(directory))
        if self.directory.parent == self.directory:
            raise ValueError("the trash cannot be /")
        self._delete = delete
        self._mounted_under = mounted_under
        self._exit_hook = False
        self._reset()
        _TRASHES.add(self)

    def _reset(self) -> None:
        """Fresh state: at creation, and in a forked child (the parent's worker and locks are not its)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Entry] = deque()
        self._busy = 0  # entries queued or being deleted
        self._own = 0  # of those, the ones this process discarded
        self._current: _Entry | None = None  # the one being deleted
        self._worker: threading.Thread | None = None

    def _forget_parent(self) -> None:
        """In a forked child: close the child's copies of the parent's locked fds, start afresh."""
        for entry in (*self._queue, self._current):
            if entry is not None and entry.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(entry.fd)
        self._reset()

    def discard(self, path: Path) -> Path | None:
        """Move directory ``path`` into the trash atomically and queue it for deletion.

        Returns where it went (None when ``path`` does not exist). Raises RuntimeFailure,
        with nothing moved, when something is mounted at or below ``path``.
        """
        try:
            opened = os.open(path, _OPEN_DIRECTORY)
        except FileNotFoundError:
            return None
        fd: int | None = opened
        try:
            try:
                fcntl.flock(opened, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # someone else's to delete after all: a later sweep claims it
                os.close(opened)
                fd = None
            mounted = self._mounted_under(path)
            if mounted:
                raise RuntimeFailure(
                    f"cannot remove {path}: {mounted[0]} is still mounted below it; unmount it and retry"
                )
            target = self.directory / f"{path.name}.{secrets.token_hex(4)}"
            try:
                os.rename(path, target)
            except FileNotFoundError:
                if not path.exists():
                    raise
                self.directory.mkdir(parents=True, exist_ok=True)  # a root made before the trash existed
                os.rename(path, target)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        self._enqueue([_Entry(target.name, fd, own=fd is not None)])
        return target

    def sweep(self, limit: int = SWEEP_LIMIT) -> int:
        """Queue up to ``limit`` entries left in the trash (by a crash or a killed process).

        Only reads the trash directory; deleting happens on the worker. Entries another live
        process is deleting are skipped then. Returns how many were queued.
        """
        names: list[str] = []
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    names.append(entry.name)
                    if len(names) >= limit:
                        break
        except FileNotFoundError:
            return 0
        if names:
            self._enqueue([_Entry(name, None, own=False) for name in names])
        return len(names)

    def wait(self, timeout: float | None = None, *, own_only: bool = False) -> bool:
        """Block until everything queued (``own_only``: what this process discarded) is deleted.

        Returns False when ``timeout`` seconds passed first.
        """
        with self._changed:
            return self._changed.wait_for(lambda: (self._own if own_only else self._busy) == 0, timeout)

    def _enqueue(self, entries: list[_Entry]) -> None:
        with self._lock:
            self._queue.extend(entries)
            self._busy += len(entries)
            own = sum(1 for e in entries if e.own)
            self._own += own
            if own and not self._exit_hook:
                self._exit_hook = True
                atexit.register(_finish_own, weakref.ref(self))
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="engine-trash", daemon=True)
                self._worker.start()
            else:
                self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                # Idle a while before ending: a daemon removing one container after another
                # then pays no thread start (about 1 ms) per removal.
                if not self._queue and not self._changed.wait_for(lambda: bool(self._queue), IDLE_SECONDS):
                    self._worker = None
                    return
                entry = self._current = self._queue.popleft()
            try:
                self._remove(entry)
            except Exception:  # the entry stays for the next sweep; the worker goes on
                pass
            finally:
                with self._changed:
                    self._current = None
                    self._busy -= 1
                    self._own -= entry.own
                    self._changed.notify_all()

    def _remove(self, entry: _Entry) -> None:
        """Delete one entry, holding its lock; skip it when another process holds it or a mount is below."""
        path = self._entry_path(entry.name)
        fd = entry.fd if entry.fd is not None else self._claim(path)
        if fd is None:
            return
        try:
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(path))
            except FileNotFoundError:
                return
            if same and not self._mounted_under(path):
                self._delete(path)
        finally:
            os.close(fd)

    def _entry_path(self, name: str) -> Path:
        """``<trash>/<name>``, after checking that ``name`` is one plain name (nothing else is deleted)."""
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise RuntimeFailure(f"refusing to delete {name!r}: not an entry of the trash {self.directory}")
        return self.directory / name

    @staticmethod
    def _claim(path: Path) -> int | None:
        """Lock a leftover entry for deleting: its directory fd, or None when it is gone or taken.

        An entry that is not a directory (nothing the engine puts there) is unlinked itself:
        a symlink goes, never what it points to.
        """
        try:
            fd = os.open(path, _OPEN_DIRECTORY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd


_TRASHES: weakref.WeakSet[Trash] = weakref.WeakSet()


def _finish_own(ref: weakref.ref[Trash]) -> None:
    """At interpreter exit: wait for what this process discarded (leftovers are the next sweep's)."""
    trash = ref()
    if trash is not None:
        with contextlib.suppress(KeyboardInterrupt):
            trash.wait(own_only=True)


def _after_fork_in_child() -> None:
    for trash in list(_TRASHES):
        trash._forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)
