"""Is a container's monitor (conmon) still alive? Answered from a cached pidfd.

The first look at a monitor reads ``/proc/<pid>/cmdline`` (the container id must be on it, so
a reused pid is not mistaken for it) and keeps a pidfd for that process; later looks poll the
pidfd, which becomes readable once that very process has exited, whatever runs under its pid
since. A long-running process (the Docker API daemon listing 100 containers) thus asks the
kernel one cheap question per container instead of opening and reading a /proc file.
"""

from __future__ import annotations

import os
import select
import threading

MAX_CACHED = 4096
"""Pidfds kept open at most; monitors beyond it are checked through /proc each time."""


def cmdline_names(pid: int, cid: str) -> bool:
    """Whether process ``pid`` lives and names container ``cid`` on its command line."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return cid.encode() in f.read()
    except OSError:
        return False


def _exited(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class MonitorWatch:
    """Liveness of monitors by container id, with one pidfd kept per live monitor."""

    def __init__(self, max_cached: int = MAX_CACHED) -> None:
        self._fds: dict[str, tuple[int, int]] = {}  # cid -> (pid, pidfd)
        self._lock = threading.Lock()
        self._max = max_cached

    def alive(self, cid: str, pid: int) -> bool:
        """Whether the monitor ``pid`` of container ``cid`` is still running."""
        with self._lock:
            cached = self._fds.get(cid)
            if cached is not None:
                if cached[0] == pid and not _exited(cached[1]):
                    return True
                self._close(cid)
                if cached[0] == pid:
                    return False  # that very process has exited
        if not cmdline_names(pid, cid):
            return False
        self._keep(cid, pid)
        return True

    def _keep(self, cid: str, pid: int) -> None:
        with self._lock:
            if cid in self._fds or len(self._fds) >= self._max:
                return
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # gone meanwhile, out of descriptors, or no pidfd support: /proc next time
                return
            # The pidfd is for whatever holds `pid` now: keep it only if that is still the monitor.
            if _exited(fd) or not cmdline_names(pid, cid):
                os.close(fd)
                return
            self._fds[cid] = (pid, fd)

    def forget(self, cid: str) -> None:
        """Close the pidfd kept for ``cid`` (its container is removed)."""
        with self._lock:
            self._close(cid)

    def keep_only(self, cids: set[str]) -> None:
        """Close the pidfds of containers not in ``cids`` (removed by another process)."""
        with self._lock:
            for cid in self._fds.keys() - cids:
                self._close(cid)

    def _close(self, cid: str) -> None:
        entry = self._fds.pop(cid, None)
        if entry is not None:
            os.close(entry[1])

    def close(self) -> None:
        """Close every pidfd."""
        with self._lock:
            for cid in list(self._fds):
                self._close(cid)
