"""hostpanel/agent/pipes.py's PipeSession on a real container: framed output, stdin's end,
the exit code, and closing a running exec ends every process it started."""

from __future__ import annotations

import os
import struct
import time

import pytest

from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import Container, ContainerSpec, ExecSpec
from hostpanel.agent.pipes import PipeSession
from tests.engine.conftest import busybox, engine

__all__ = ["busybox", "engine"]  # the engine's fixtures: a real engine and the busybox image

pytestmark = [pytest.mark.privileged]


@pytest.fixture
def sleeper(engine: Engine, busybox: Image) -> Container:
    return engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))


def frames(session: PipeSession, timeout: float = 20.0) -> list[tuple[int, bytes]]:
    """Everything the session writes until its end, as (stream, data) frames."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = session.read(timeout=0.2)
        if chunk == b"":
            break
        data += chunk or b""
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def processes(text: str) -> list[int]:
    """Pids of the host's processes whose command line holds ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry))
    return found


def test_output_comes_framed_and_stdin_ends(engine: Engine, sleeper: Container) -> None:
    session = PipeSession.start(
        engine, sleeper.id, ExecSpec(command=("sh", "-c", "cat; echo err >&2; exit 3")), stdin=True
    )
    assert session.write(b"typed\n", timeout=5) == 6
    session.close_stdin()
    got = frames(session)
    assert b"".join(d for s, d in got if s == 1) == b"typed\n"
    assert b"".join(d for s, d in got if s == 2) == b"err\n"
    assert session.close() == 3


def test_closing_a_running_exec_ends_all_its_processes(engine: Engine, sleeper: Container) -> None:
    marker = "sleep 6543"
    session = PipeSession.start(
        engine, sleeper.id, ExecSpec(command=("sh", "-c", f"echo started; {marker}; echo never")), stdin=False
    )
    assert session.read(timeout=20)
    deadline = time.monotonic() + 10
    while not processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes(marker)
    assert session.close() == 137
    deadline = time.monotonic() + 10
    while processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes(marker) == []
    assert engine.get(sleeper.id).status == "running"  # the container itself goes on
