"""The terminal's engine side: opening a shell on a pty in a container, and one keystroke's echo.

Usage: .venv/bin/python bench/terminal.py [--runs 30]
Rows: a shell on a host pty (no container, the floor); `engine.exec` of /bin/true
without a terminal (the existing exec path); Engine.exec_pty opening /bin/sh and
closing it (kill, reap, clean-up); and, in one open session, the round trip of
one typed byte until the terminal echoes it. Prints min/median/p95 in ms.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, scratch_engine, summary, timed
from engine.runtime.model import ContainerSpec, ExecSpec
from engine.runtime.pty_exec import PtySession

SHELL = ExecSpec(command=("/bin/sh",), env=("TERM=xterm",))


def host_shell_open_close() -> None:
    pid, master = pty.fork()
    if pid == 0:
        os.execv("/bin/sh", ["/bin/sh"])
    os.write(master, b"exit\n")
    os.waitpid(pid, 0)
    os.close(master)


def read_until(session: PtySession, needle: bytes) -> None:
    seen = b""
    while needle not in seen:
        seen += session.read(timeout=10) or b""


def echo_round_trip(session: PtySession) -> None:
    session.write(b"x")
    read_until(session, b"x")
    session.write(b"\x7f")  # erase it again: the line stays empty
    read_until(session, b"\x08")


def host_echo_round_trip(master: int) -> None:
    os.write(master, b"x")
    select.select([master], [], [], 10)
    os.read(master, 1024)
    os.write(master, b"\x7f")
    select.select([master], [], [], 10)
    os.read(master, 1024)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rows = []
    with scratch_engine() as engine:
        box = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))

        def exec_true() -> None:
            engine.exec(box.id, ExecSpec(command=("/bin/true",)), stdin=subprocess.DEVNULL).wait()

        def pty_open_close() -> None:
            with engine.exec_pty(box.id, SHELL) as session:
                read_until(session, b"# ")

        cases = [
            ("host pty: /bin/sh open + exit (no container)", host_shell_open_close),
            ("engine.exec /bin/true, no terminal", exec_true),
            ("Engine.exec_pty /bin/sh open + close", pty_open_close),
        ]
        for name, fn in cases:
            fn()  # warm up
            low, median, p95 = summary(timed(fn, args.runs))
            rows.append([name, f"{low:.1f}", f"{median:.1f}", f"{p95:.1f}"])

        pid, master = pty.fork()
        if pid == 0:
            os.execv("/bin/sh", ["/bin/sh"])
        try:
            select.select([master], [], [], 10)
            os.read(master, 4096)
            low, median, p95 = summary(timed(lambda: host_echo_round_trip(master), args.runs * 10))
            rows.append(["host pty: one keystroke echoed", f"{low:.2f}", f"{median:.2f}", f"{p95:.2f}"])
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(master)
        with engine.exec_pty(box.id, SHELL) as session:
            read_until(session, b"# ")
            low, median, p95 = summary(timed(lambda: echo_round_trip(session), args.runs * 10))
            rows.append(["exec_pty: one keystroke echoed", f"{low:.2f}", f"{median:.2f}", f"{p95:.2f}"])
    print_table(["case", "min ms", "median ms", "p95 ms"], rows)


if __name__ == "__main__":
    main()
