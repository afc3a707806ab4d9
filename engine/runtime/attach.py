"""Attach to a container's main process: its output as it comes, its stdin, its terminal size.

conmon (see :mod:`engine.runtime.oci_runtime`) holds the container's stdio for its whole life
and keeps writing the log file whoever is attached. It listens on a unix SOCK_SEQPACKET socket
in the bundle (``attach``): each packet it sends is one byte naming the stream (2 stdout, 3
stderr; a terminal's output is stdout) followed by the data; what a client sends goes to the
container's stdin (the terminal when it has one). A client that disconnects detaches: the
container keeps running. The terminal's size is set through conmon's ``ctl`` fifo
(``"1 ROWS COLS\\n"``).

The socket's path is longer than a unix address allows (the bundle sits under the engine root
and a 64-digit id), so it is reached through ``/proc/self/fd/N/attach`` of an ``O_PATH`` fd of
the bundle. :class:`AttachSession` takes an already connected socket, so unit tests drive it
over a ``socketpair``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
from pathlib import Path
from types import TracebackType

from engine.errors import Conflict, InvalidSpec, RuntimeFailure
from engine.runtime.containers import ContainerManager
from engine.runtime.model import Container

STDOUT = 2
STDERR = 3
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
PACKET_MAX = 65536
MAX_TERMINAL_SIZE = 1000
RESIZE_MESSAGE = "1 {rows} {cols}\n"
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, as docker


def validate_size(rows: int, cols: int) -> None:
    """InvalidSpec unless 1 <= rows, cols <= 1000."""
    if not (1 <= rows <= MAX_TERMINAL_SIZE and 1 <= cols <= MAX_TERMINAL_SIZE):
        raise InvalidSpec(
            f"invalid terminal size {rows}x{cols}: rows and columns must be between 1 and {MAX_TERMINAL_SIZE}"
        )


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach key syntax (``ctrl-p,ctrl-q``, ``a``, ``ctrl-@``) as the bytes to look for.

    An empty ``spec`` means the default (ctrl-p ctrl-q). Raises InvalidSpec naming the bad key.
    """
    if not spec:
        return DEFAULT_DETACH_KEYS
    keys = bytearray()
    advice = "use a letter or ctrl-<letter>, like ctrl-p,ctrl-q"
    for key in spec.split(","):
        lowered = key.strip().lower()
        if len(key) == 1:
            keys.append(ord(key))
        elif lowered.startswith("ctrl-") and len(lowered) == 6:
            char = lowered[5]
            if "a" <= char <= "z":
                keys.append(ord(char) - ord("a") + 1)
            elif char in "@[\\]^_":
                keys.append(ord(char) - ord("@"))
            else:
                raise InvalidSpec(f"invalid detach key {key!r}: {advice}")
        else:
            raise InvalidSpec(f"invalid detach key {key!r}: {advice}")
    return bytes(keys)


class DetachScanner:
    """Watches a stdin stream for the detach key sequence.

    :meth:`feed` returns the bytes to pass on to the container and whether the sequence was
    typed. A partial match at the end of a chunk is held back until the next one decides.
    """

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, detach requested)."""
        if not self.keys:
            return data, False
        buffer = self._held + data
        self._held = b""
        index = buffer.find(self.keys)
        if index >= 0:
            return buffer[:index], True
        for keep in range(min(len(self.keys) - 1, len(buffer)), 0, -1):
            if self.keys.startswith(buffer[-keep:]):
                self._held = buffer[-keep:]
                return buffer[:-keep], False
        return buffer, False

    def flush(self) -> bytes:
        """What was held back (at the end of the input)."""
        held, self._held = self._held, b""
        return held


class AttachSession:
    """A client attached to a container's main process (see module doc).

    ``fileno()`` is readable when output (or the end) is there; :meth:`read` returns it,
    :meth:`write` types into the container's stdin, :meth:`close_stdin` sends end-of-file
    (conmon closes the container's stdin unless it was asked to leave it open), :meth:`resize`
    sets the terminal's size, :meth:`close` detaches. Output ends (``read`` gives ``None``
    stream and b'') when the container exits.
    """

    def __init__(self, sock: socket.socket, ctl_fifo: Path | None, *, tty: bool) -> None:
        self._sock = sock
        self._ctl = ctl_fifo
        self.tty = tty
        self.closed = False

    def fileno(self) -> int:
        """The socket's fd, for select/poll."""
        return self._sock.fileno()

    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """The next chunk of output as (stream name, data); ('', b'') once output has ended.

        Waits up to ``timeout`` seconds (None: until something comes); None when nothing did.
        """
        if self.closed:
            return "", b""
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return None
        try:
            packet = self._sock.recv(PACKET_MAX)
        except (ConnectionResetError, BrokenPipeError):
            return "", b""
        if not packet:
            return "", b""
        return STREAM_NAMES.get(packet[0], "stdout"), packet[1:]

    def write(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin. RuntimeFailure when the container is gone."""
        try:
            for start in range(0, len(data), 8192):  # conmon reads at most 8 KiB per packet
                self._sock.sendall(data[start : start + 8192])
        except OSError as exc:
            raise RuntimeFailure(f"cannot write to the container's stdin: {exc.strerror}") from exc

    def close_stdin(self) -> None:
        """End of input: the container's stdin reads EOF unless it is kept open."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's size (InvalidSpec for an impossible one; ignored without a terminal)."""
        validate_size(rows, cols)
        if self.tty and self._ctl is not None:
            write_resize(self._ctl, rows, cols)

    def close(self) -> None:
        """Detach; the container keeps running. Safe to call twice."""
        if not self.closed:
            self.closed = True
            self._sock.close()

    def __enter__(self) -> AttachSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_resize(ctl_fifo: Path, rows: int, cols: int) -> None:
    """Ask conmon to set the terminal's size; RuntimeFailure when no conmon listens any more."""
    try:
        fd = os.open(ctl_fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            raise Conflict("the container is not running; its terminal cannot be resized") from None
        raise RuntimeFailure(f"cannot resize the terminal: {exc.strerror}") from exc
    try:
        os.write(fd, RESIZE_MESSAGE.format(rows=rows, cols=cols).encode())
    finally:
        os.close(fd)


def connect(bundle: Path) -> socket.socket:
    """A socket connected to conmon's attach socket in ``bundle`` (OSError when none listens)."""
    dir_fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/attach")
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return sock


def attach(containers: ContainerManager, ref: str | Container) -> AttachSession:
    """Attach to the main process of container ``ref`` (created or running).

    Attach before start to see the first output. Raises ContainerNotFound, and Conflict when
    the container has exited (nothing is left to attach to).
    """
    container = containers.get(ref)
    if container.status not in ("created", "running"):
        raise Conflict(f"container {container.name} is not running; start it first")
    files = containers.files(container.id)
    try:
        sock = connect(files.bundle)
    except OSError as exc:
        if containers.get(container.id).status not in ("created", "running"):
            raise Conflict(f"container {container.name} is not running; start it first") from None
        raise RuntimeFailure(f"cannot attach to {container.name}: {exc.strerror}") from exc
    return AttachSession(sock, files.ctl_fifo, tty=container.tty)


def resize(containers: ContainerManager, ref: str | Container, rows: int, cols: int) -> None:
    """Set the terminal size of container ``ref``'s main process.

    InvalidSpec for an impossible size or a container without a terminal, Conflict when it
    does not run.
    """
    validate_size(rows, cols)
    container = containers.get(ref)
    if not container.tty:
        raise InvalidSpec(f"container {container.name} has no terminal (create it with a TTY: -t)")
    if container.status not in ("created", "running"):
        raise Conflict(f"container {container.name} is not running; its terminal cannot be resized")
    write_resize(containers.files(container.id).ctl_fifo, rows, cols)
