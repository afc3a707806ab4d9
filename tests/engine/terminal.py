"""A process on a pseudo-terminal, for tests that drive interactive CLIs (docker -it, hpctl -it)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import subprocess
import termios
import time

import pytest


def set_size(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal ``fd`` (its foreground process gets SIGWINCH)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """A process on its own pseudo-terminal (as its controlling terminal)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        set_size(slave, 24, 80)

        def take_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        self.master = master
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline:
                pytest.fail(f"no {needle!r} on the terminal; got {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    pytest.fail(f"the terminal closed before {needle!r}; got {self.output!r}")
                self.output += chunk
        return self.output

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.master, 65536)
        code = self.proc.wait(timeout=1)
        os.close(self.master)
        return code
