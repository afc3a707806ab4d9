"""Engine.exec_pty: a shell on a real terminal inside a real crun container."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import CommandNotFound, Conflict, InvalidSpec
from engine.images.model import Image
from engine.runtime.model import Container, ContainerSpec, ExecSpec
from engine.runtime.pty_exec import PtySession, session_members

SHELL = ExecSpec(command=("/bin/sh",), env=("TERM=xterm",))


def read_until(session: PtySession, needle: bytes, timeout: float = 20.0) -> bytes:
    """Terminal output until ``needle`` shows up (fails the test after ``timeout``)."""
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        if time.monotonic() > deadline:
            pytest.fail(f"no {needle!r} on the terminal; got {out!r}")
        chunk = session.read(timeout=0.2)
        if chunk == b"":
            pytest.fail(f"the terminal closed before {needle!r}; got {out!r}")
        out += chunk or b""
    return out


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def exec_dirs(engine: Engine) -> list[Path]:
    return list(engine.paths.run.glob("exec-*"))


@pytest.fixture()
def sleeper(engine: Engine, busybox: Image) -> Container:
    return engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))


def test_echo_round_trip_and_exit_code(engine: Engine, sleeper: Container) -> None:
    fds_before = open_fds()
    token = secrets.token_hex(4)
    with engine.exec_pty(sleeper.id, SHELL) as session:
        session.write(f"echo hello-$((6*7))-{token}\n".encode())
        assert f"hello-42-{token}".encode() in read_until(session, f"hello-42-{token}\r\n".encode())
        session.write(b"exit 7\n")
        assert session.wait(timeout=20) == 7
        rest = b""
        while (chunk := session.read(timeout=5)) is not None and chunk:
            rest += chunk
        assert chunk == b""  # the terminal closed with the shell, after its last output
    assert session.close() == 7
    assert open_fds() == fds_before
    assert exec_dirs(engine) == []


def test_terminal_size_and_resize(engine: Engine, sleeper: Container) -> None:
    with engine.exec_pty(sleeper.id, SHELL, rows=30, cols=90) as session:
        session.write(b"echo size=$(stty size)=\n")
        read_until(session, b"size=30 90=")
        session.resize(41, 123)
        session.write(b"echo size=$(stty size)=\n")
        read_until(session, b"size=41 123=")
        with pytest.raises(InvalidSpec, match="between 1 and"):
            session.resize(0, 80)


def test_close_kills_the_shell_and_what_it_started(engine: Engine, busybox: Image) -> None:
    # with an init as pid 1 the orphaned children are reaped too, so no trace at all may remain
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600"), init=True))
    fds_before = open_fds()
    session = engine.exec_pty(container.id, SHELL)
    # a child that ignores SIGHUP and outlives the terminal unless the session is killed
    session.write(b"trap '' HUP; (trap '' HUP; exec sleep 1234) & echo started-$((40+2))\n")
    read_until(session, b"started-42")
    members = session_members(session.pid)
    assert len(members) >= 2, "the shell and its background sleep"
    assert session.close() == 137  # killed
    assert session_members(session.pid) == []
    for pid in members:
        for _ in range(500):  # the container's init reaps the orphaned zombie soon after
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.01)
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} of the session is still there"
    assert open_fds() == fds_before  # terminal, pidfd and crun's stderr pipe closed
    assert exec_dirs(engine) == []
    assert session.close() == 137  # twice is fine
    # the container itself is untouched
    assert engine.get(container.id).status == "running"


def test_exit_of_the_shell_is_seen_on_exit_fd(engine: Engine, sleeper: Container) -> None:
    import select

    with engine.exec_pty(sleeper.id, ExecSpec(command=("sh", "-c", "exit 3"))) as session:
        ready, _, _ = select.select([session.exit_fd()], [], [], 20)
        assert ready == [session.exit_fd()]
        assert session.poll() == 3


def test_missing_command_fails_clearly_and_leaves_nothing(engine: Engine, sleeper: Container) -> None:
    fds_before = open_fds()
    with pytest.raises(CommandNotFound, match="'/no/such/shell' does not exist in the container"):
        engine.exec_pty(sleeper.id, ExecSpec(command=("/no/such/shell",)))
    assert open_fds() == fds_before
    assert exec_dirs(engine) == []


def test_bad_size_and_stopped_container_are_refused(engine: Engine, busybox: Image) -> None:
    container = engine.create(ContainerSpec(image="busybox", command=("sleep", "3600")))
    engine.get(container.id)  # the engine keeps one pidfd per live monitor (runtime/monitors.py): not a leak
    fds_before = open_fds()
    with pytest.raises(InvalidSpec, match="invalid terminal size 0x80"):
        engine.exec_pty(container.id, SHELL, rows=0, cols=80)
    with pytest.raises(Conflict, match="is not running"):
        engine.exec_pty(container.id, SHELL)
    assert open_fds() == fds_before
    assert exec_dirs(engine) == []
