"""A non-TTY exec for the relay: the process's stdout and stderr as Docker's multiplexed frames.

:class:`PipeSession` offers the surface of :class:`engine.runtime.pty_exec.PtySession` the
relay uses (``fileno``, ``exit_fd``, ``read``, ``write``, ``resize``, ``close``), plus
:meth:`PipeSession.close_stdin` for the end of the client's input. A thread copies both
pipes, as frames (:func:`engine.dockerapi.http.frame`), into one internal pipe, so the relay
reads one ordered stream and the Docker API door forwards it unchanged; when the internal pipe
is full the thread (and so the process) waits, as with a terminal. Closing a running session
ends the process and everything it started (crun gives it a session of its own).
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import threading
import time
from typing import IO

from engine.dockerapi.http import STDERR, STDOUT, frame
from engine.engine import Engine
from engine.runtime.model import ExecSpec
from engine.runtime.pty_exec import pid_namespace, session_members

KILL_TIMEOUT_SECONDS = 5.0


def _children(parent: int) -> list[tuple[int, int]]:
    """(pid, session id) of the living children of process ``parent`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state ppid pgrp session ...
        if len(fields) > 3 and int(fields[1]) == parent and fields[0] not in (b"Z", b"X"):
            found.append((int(entry), int(fields[3])))
    return found


class PipeSession:
    """A process in a container with piped stdio; see the module doc."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.exit_code: int | None = None
        self._out_r, self._out_w = os.pipe()
        self._done_r, self._done_w = os.pipe()
        os.set_blocking(self._out_r, False)
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
        self._closed = False
        self._copier = threading.Thread(target=self._copy, name=f"exec-pipes-{proc.pid}", daemon=True)
        self._copier.start()

    @classmethod
    def start(cls, engine: Engine, ref: str, spec: ExecSpec, *, stdin: bool) -> PipeSession:
        """Start ``spec`` in container ``ref`` (engine errors as :meth:`Engine.exec` raises them)."""
        proc = engine.exec(
            ref,
            spec,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return cls(proc)

    def _copy(self) -> None:
        pipes: dict[int, tuple[int, IO[bytes]]] = {}
        for stream, pipe in ((STDOUT, self._proc.stdout), (STDERR, self._proc.stderr)):
            if pipe is not None:
                pipes[pipe.fileno()] = (stream, pipe)
        try:
            with selectors.DefaultSelector() as selector:
                for fd in pipes:
                    selector.register(fd, selectors.EVENT_READ)
                while pipes:
                    for key, _ in selector.select():
                        fd = int(key.fd)
                        data = os.read(fd, 65536)
                        if not data:
                            selector.unregister(fd)
                            pipes.pop(fd)[1].close()
                            continue
                        self._write_all(frame(pipes[fd][0], data))
        except OSError:
            pass  # the session was closed under us
        finally:
            with contextlib.suppress(OSError):
                os.close(self._out_w)
            code = self._proc.wait()
            self.exit_code = 128 - code if code < 0 else code

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._out_w, view) :]

    def fileno(self) -> int:
        """Readable when framed output is waiting (non-blocking)."""
        return self._out_r

    def exit_fd(self) -> int:
        """Readable once :meth:`read` returned the end of the output (the process's stdout and
        stderr closed): a reader never races the exit while it still forwards output."""
        return self._done_r

    def read(self, max_bytes: int = 65536, timeout: float | None = 0.0) -> bytes | None:
        """Framed output, up to ``max_bytes``; b'' at its end; None when nothing came in ``timeout``."""
        if self._closed:
            return b""
        ready, _, _ = select.select([self._out_r], [], [], timeout)
        if not ready:
            return None
        try:
            data = os.read(self._out_r, max_bytes)
        except BlockingIOError:
            return None
        if not data:  # all output read: only now is the session over (see exit_fd)
            with contextlib.suppress(OSError):
                os.write(self._done_w, b"x")
        return data

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Send ``data`` to the process's stdin; returns how much it took (0 once stdin is closed)."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return 0
        _, ready, _ = select.select([], [stdin], [], timeout)
        if not ready:
            return 0
        try:
            return os.write(stdin.fileno(), data)
        except BlockingIOError:
            return 0
        except OSError:  # the process closed its stdin
            return len(data)

    def close_stdin(self) -> None:
        """The client's input ended: the process reads end of file."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def resize(self, rows: int, cols: int) -> None:
        """No terminal: nothing to resize."""

    def _kill_session(self) -> None:
        """SIGKILL the exec's processes until none is left (they may fork meanwhile), then crun.

        crun starts the process in a session of its own (in the container's pid namespace):
        that session, learnt from crun's child while crun is not reaped yet, is what ends."""
        sessions = {(sid, pid_namespace(pid)) for pid, sid in _children(self._proc.pid)}
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while members := [pid for sid, ns in sessions if ns for pid in session_members(sid, ns)]:
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()

    def close(self) -> int:
        """End the session (killing the exec if it still runs); returns its exit code. Safe twice."""
        if not self._closed:
            self._closed = True
            self.close_stdin()
            if self._proc.poll() is None:
                self._kill_session()
            with contextlib.suppress(OSError):  # a copier blocked on a full pipe gets EPIPE
                os.close(self._out_r)
            self._copier.join(KILL_TIMEOUT_SECONDS)
            for fd in (self._done_r, self._done_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.exit_code is None:
            code = self._proc.wait()
            self.exit_code = 128 - code if code < 0 else code
        return self.exit_code
