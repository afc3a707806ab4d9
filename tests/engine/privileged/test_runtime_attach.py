"""Interactive containers through real conmon + crun: a TTY and an open stdin, attach, detach, resize."""

from __future__ import annotations

import secrets
import time

import pytest

from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec
from engine.images.model import Image
from engine.runtime.attach import AttachSession
from engine.runtime.model import ContainerSpec


def read_until(session: AttachSession, needle: bytes, timeout: float = 20.0) -> tuple[bytes, set[str]]:
    """Output until ``needle`` shows up, and the stream names it came on (fails after ``timeout``)."""
    out, streams = b"", set()
    deadline = time.monotonic() + timeout
    while needle not in out:
        if time.monotonic() > deadline:
            pytest.fail(f"no {needle!r} in the output; got {out!r}")
        got = session.read(timeout=0.2)
        if got is None:
            continue
        stream, data = got
        if not data:
            pytest.fail(f"the output ended before {needle!r}; got {out!r}")
        out += data
        streams.add(stream)
    return out, streams


def read_to_end(session: AttachSession, timeout: float = 20.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = session.read(timeout=0.2)
        if got is None:
            continue
        if not got[1]:
            return out
        out += got[1]
    pytest.fail(f"the output did not end; got {out!r}")


def test_tty_shell_round_trip_exit_code_and_log(engine: Engine, busybox: Image) -> None:
    container = engine.create(
        ContainerSpec(image="busybox", command=("sh",), tty=True, open_stdin=True, stdin_once=True)
    )
    token = secrets.token_hex(4)
    with engine.attach(container.id) as session:
        engine.start(container.id)
        read_until(session, b"# ")  # the prompt, sent before anyone typed: attach came first
        session.write(f"echo hi-$((6*7))-{token}; tty\n".encode())
        out, streams = read_until(session, b"/dev/pts/")
        assert f"hi-42-{token}\r\n".encode() in out  # a terminal turns \n into \r\n
        assert streams == {"stdout"}
        session.write(b"exit 3\n")
        read_to_end(session)
    assert engine.wait(container.id, timeout=20).exit_code == 3
    logged = [line.text for line in engine.logs(container.id)]
    assert f"hi-42-{token}\r" in logged  # the log file got the terminal's output too (raw, as docker)


def test_detach_keeps_it_running_and_reattach_sees_new_output(engine: Engine, busybox: Image) -> None:
    container = engine.create(ContainerSpec(image="busybox", command=("sh",), tty=True, open_stdin=True))
    with engine.attach(container.id) as session:
        engine.start(container.id)
        read_until(session, b"# ")
    time.sleep(0.3)
    assert engine.get(container.id).status == "running"
    with engine.attach(container.id) as session:
        session.write(b"echo again-$((1+1))\n")
        read_until(session, b"again-2\r\n")
        engine.resize(container.id, 33, 101)
        session.write(b"stty size\n")
        read_until(session, b"33 101\r\n")
        session.resize(12, 34)
        session.write(b"stty size\n")
        read_until(session, b"12 34\r\n")


def test_open_stdin_without_tty_keeps_streams_apart_and_eof_ends_it(engine: Engine, busybox: Image) -> None:
    container = engine.create(
        ContainerSpec(
            image="busybox",
            command=("sh", "-c", "cat; echo to-stderr >&2; echo done"),
            open_stdin=True,
            stdin_once=True,
        )
    )
    chunks: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    with engine.attach(container.id) as session:
        engine.start(container.id)
        session.write(b"typed line\n")
        session.close_stdin()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = session.read(timeout=0.2)
            if got is None:
                continue
            if not got[1]:
                break
            chunks[got[0]] += got[1]
    assert chunks == {"stdout": b"typed line\ndone\n", "stderr": b"to-stderr\n"}
    assert engine.wait(container.id, timeout=20).exit_code == 0


def test_attach_refusals(engine: Engine, busybox: Image) -> None:
    plain = engine.run(ContainerSpec(image="busybox", command=("true",)))
    engine.wait(plain.id, timeout=20)
    with pytest.raises(Conflict, match="not running"):
        engine.attach(plain.id)
    with pytest.raises(InvalidSpec, match="no terminal"):
        engine.resize(plain.id, 10, 10)
    tty = engine.create(ContainerSpec(image="busybox", command=("sh",), tty=True, open_stdin=True))
    with pytest.raises(InvalidSpec, match="between 1 and 1000"):
        engine.resize(tty.id, 0, 80)


def test_plain_container_output_reaches_an_attached_client(engine: Engine, busybox: Image) -> None:
    container = engine.create(ContainerSpec(image="busybox", command=("sh", "-c", "echo out; echo err >&2")))
    with engine.attach(container.id) as session:
        engine.start(container.id)
        out, streams = read_until(session, b"err\n")
    assert b"out\n" in out and streams <= {"stdout", "stderr"}


def test_only_root_reaches_the_stdin_and_the_terminal_size(engine: Engine, busybox: Image) -> None:
    """Another host user must not type into a container: the attach socket and ctl fifo are root's."""
    import os
    import stat as stat_module

    container = engine.create(ContainerSpec(image="busybox", command=("sh",), tty=True, open_stdin=True))
    files = engine.containers.files(container.id)
    for path in (files.attach_socket, files.ctl_fifo):
        st = os.lstat(path)
        assert st.st_uid == 0 and stat_module.S_IMODE(st.st_mode) & 0o007 == 0, path
    assert stat_module.S_IMODE(os.lstat(files.attach_socket).st_mode) & 0o077 == 0
