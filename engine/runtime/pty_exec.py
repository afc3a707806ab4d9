"""Interactive processes in a container on a pseudo-terminal (a shell in the browser, `exec -it`).

crun 1.8.1 relays a terminal itself only to its own stdio and copies the
window size once; to resize later we need the terminal's master side. With
``crun exec --tty --console-socket PATH`` crun sends that master fd over a
unix socket (SCM_RIGHTS) and then waits for the process, exiting with its
code. :func:`start_pty_exec` listens on a private socket, receives the fd and
hands back a :class:`PtySession`; closing the session kills every process of
the exec's session (the shell and what it started), closes the terminal,
reaps crun and removes the socket directory, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path
from types import TracebackType

from engine.errors import CommandNotFound, InvalidSpec, RuntimeFailure
from engine.runtime.containers import ContainerManager
from engine.runtime.model import ExecSpec

START_TIMEOUT_SECONDS = 30.0
KILL_TIMEOUT_SECONDS = 10.0
MAX_TERMINAL_SIZE = 1000
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _validate_size(rows: int, cols: int) -> None:
    if not (1 <= rows <= MAX_TERMINAL_SIZE and 1 <= cols <= MAX_TERMINAL_SIZE):
        raise InvalidSpec(
            f"invalid terminal size {rows}x{cols}: rows and columns must be between 1 and {MAX_TERMINAL_SIZE}"
        )


def _session_of(pid: int) -> tuple[int, str] | None:
    """The session id and state letter of process ``pid`` (from /proc), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces, so split after its ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[3]), fields[0].decode()) if len(fields) > 3 else None


def pid_namespace(pid: int) -> str | None:
    """The pid namespace of process ``pid`` (like 'pid:[4026532]'), or None when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def session_members(session: int, namespace: str | None = None) -> list[int]:
    """Pids of the living processes on the host whose session id is ``session`` (in pid ``namespace``).

    Zombies are left out: they are dead already, and their parent (or the
    container's init, once the parent is gone) reaps them.
    """
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        found = _session_of(int(entry))
        if (
            found is not None
            and found[0] == session
            and found[1] not in ("Z", "X")
            and (namespace is None or pid_namespace(int(entry)) == namespace)
        ):
            members.append(int(entry))
    return members


class PtySession:
    """A process running inside a container on its own pseudo-terminal.

    Read its output with :meth:`read`, type with :meth:`write`, change the
    window with :meth:`resize`; :meth:`wait` gives the exit code and
    :meth:`close` ends it (always call it, or use the session as a context
    manager). ``fileno()`` is the terminal's master fd (readable when there is
    output) and ``exit_fd()`` a pidfd that becomes readable once the process
    has exited, for callers that multiplex with select or an event loop.
    """

    def __init__(self, master: int, runtime_proc: subprocess.Popen[bytes], pid: int, workdir: Path) -> None:
        self._master = master
        self._proc = runtime_proc
        self._exit_fd = os.pidfd_open(runtime_proc.pid)
        self.pid = pid
        # a reaped pid may be reused: only ever kill processes in the container's pid namespace
        self._namespace = pid_namespace(pid) or "gone"
        self._workdir = workdir
        self._closed = False
        self.exit_code: int | None = None

    def fileno(self) -> int:
        """The master side of the terminal (non-blocking)."""
        return self._master

    def exit_fd(self) -> int:
        """A pidfd that is readable once the process (and crun, which waits for it) has exited."""
        return self._exit_fd

    def read(self, max_bytes: int = 65536, timeout: float | None = 0.0) -> bytes | None:
        """Output of the process: up to ``max_bytes``; b'' once the terminal is closed.

        Waits up to ``timeout`` seconds (None: until there is output) and
        returns None when nothing came in that time.
        """
        if self._closed:
            return b""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return None
        try:
            return os.read(self._master, max_bytes)
        except BlockingIOError:
            return None
        except OSError:  # EIO: every slave side is closed, the process and its children are gone
            return b""

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Type ``data`` into the terminal; returns how many bytes the terminal took.

        Waits up to ``timeout`` seconds (None: as long as it takes) while the
        terminal's input buffer is full. Raises RuntimeFailure once closed.
        """
        if self._closed:
            raise RuntimeFailure("the terminal session is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        written = 0
        while written < len(data):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, ready, _ = select.select([], [self._master], [], remaining)
            if not ready:
                break
            try:
                written += os.write(self._master, data[written:])
            except BlockingIOError:
                continue
            except OSError:  # the process closed the terminal
                break
        return written

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size; the process gets SIGWINCH. InvalidSpec for an impossible size."""
        _validate_size(rows, cols)
        if self._closed:
            return
        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def poll(self) -> int | None:
        """The exit code if the process has exited, else None."""
        return self.wait(timeout=0)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (None: forever) for the exit code; None if still running."""
        if self.exit_code is not None:
            return self.exit_code
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_code = 128 - code if code < 0 else code  # crun itself killed: like a shell reports it
        return self.exit_code

    def close(self) -> int:
        """End the session: kill the process and everything it started, free the terminal.

        Returns the exit code (137 when it had to be killed). Safe to call twice.
        """
        if not self._closed:
            self._closed = True
            try:
                self._kill_session()
                code = self.wait(KILL_TIMEOUT_SECONDS)
                if code is None:  # crun is stuck: it is ours, so kill it too
                    self._proc.kill()
                    self.wait()
            finally:
                os.close(self._master)
                os.close(self._exit_fd)
                if self._proc.stderr is not None:
                    self._proc.stderr.close()
                shutil.rmtree(self._workdir, ignore_errors=True)
        assert self.exit_code is not None
        return self.exit_code

    def _kill_session(self) -> None:
        """SIGKILL every process of the exec's session until none is left (they may fork meanwhile)."""
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while self._proc.poll() is None or session_members(self.pid, self._namespace):
            for pid in session_members(self.pid, self._namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)

    def __enter__(self) -> PtySession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_pty_exec(
    containers: ContainerManager, ref: str, spec: ExecSpec, *, rows: int = 24, cols: int = 80
) -> PtySession:
    """Start ``spec`` inside running container ``ref`` on a new terminal of ``rows`` x ``cols``.

    Raises InvalidSpec for a bad size or spec, Conflict when the container
    does not run, CommandNotFound when the command does not exist in it, and
    RuntimeFailure when crun fails; nothing is left behind on any error.
    """
    _validate_size(rows, cols)
    workdir = _session_dir(containers.paths.run)
    socket_path, pid_file = workdir / "console.sock", workdir / "pid"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            try:
                server.bind(str(socket_path))
            except OSError as exc:
                raise RuntimeFailure(f"cannot create the console socket {socket_path}: {exc}") from exc
            server.listen(1)
            proc = containers.exec(
                ref,
                spec,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                tty=True,
                console_socket=socket_path,
                pid_file=pid_file,
            )
            master = _receive_master(server, proc, spec)
        try:
            os.set_blocking(master, False)
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            pid = _read_pid(pid_file, proc, spec, master)
            return PtySession(master, proc, pid, workdir)
        except BaseException:
            os.close(master)
            raise
    except BaseException:
        if proc is not None:
            _abandon(proc, pid_file)
        shutil.rmtree(workdir, ignore_errors=True)
        raise


# A unix socket path must fit in sun_path (108 bytes with the final NUL).
_SUN_PATH_MAX = 107


def _session_dir(run_dir: Path) -> Path:
    """A private (0700) directory for one session's console socket and pid file.

    Under the engine's run directory when the socket path fits in a unix socket
    address, else in the system's temporary directory (a long engine root).
    """
    fits = len(str(run_dir)) + len("/exec-XXXXXXXX/console.sock") <= _SUN_PATH_MAX
    if fits:
        run_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="hp-exec-" if not fits else "exec-", dir=run_dir if fits else None))


def _receive_master(server: socket.socket, proc: subprocess.Popen[bytes], spec: ExecSpec) -> int:
    """Accept crun's connection and take the terminal fd it sends; fail with crun's message."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        ready, _, _ = select.select([server], [], [], 0.05)
        if ready:
            break
        if proc.poll() is not None:
            raise _start_failure(proc, spec)
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"crun did not open a terminal within {START_TIMEOUT_SECONDS:.0f} s")
    conn, _ = server.accept()
    with conn:
        conn.settimeout(START_TIMEOUT_SECONDS)
        fds: list[int] = []
        _msg, ancillary, _flags, _addr = conn.recvmsg(1024, socket.CMSG_SPACE(struct.calcsize("i")))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(data) - len(data) % struct.calcsize("i")
                fds += list(struct.unpack(f"{usable // struct.calcsize('i')}i", data[:usable]))
    if not fds:
        raise RuntimeFailure("crun connected to the console socket but sent no terminal")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def _start_failure(proc: subprocess.Popen[bytes], spec: ExecSpec, master: int | None = None) -> Exception:
    """The error for a crun that exited before the command ran, with what it said.

    crun reports a failed execve on the process's stdio, which is the terminal
    once it sent it: read what is left there too.
    """
    said = proc.stderr.read() if proc.stderr is not None else b""
    if master is not None:
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 65536):
                said += chunk
    err = ANSI_ESCAPE.sub("", said.decode(errors="replace")).strip()
    if ("executable file" in err and "not found" in err) or "No such file" in err:
        return CommandNotFound(
            f"{spec.command[0]!r} does not exist in the container ({err}); give a command that does, "
            "like /bin/sh"
        )
    return RuntimeFailure(f"crun exec failed (exit {proc.returncode}): {err or 'no message'}")


def _read_pid(pid_file: Path, proc: subprocess.Popen[bytes], spec: ExecSpec, master: int) -> int:
    """The exec'd process's pid, which crun writes once the command runs (after sending the terminal)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(pid_file.read_text().strip())
        if proc.poll() is not None:
            raise _start_failure(proc, spec, master)
        time.sleep(0.005)
    raise RuntimeFailure(f"crun did not start the process within {START_TIMEOUT_SECONDS:.0f} s")


def _abandon(proc: subprocess.Popen[bytes], pid_file: Path) -> None:
    """Kill a half-started exec: its process session (if it has a pid yet), then crun."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        for member in session_members(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()
