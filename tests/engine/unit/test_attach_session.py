"""engine.runtime.attach without root: the session over a socketpair, detach keys, conmon flags."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidSpec
from engine.runtime.attach import AttachSession, DetachScanner, parse_detach_keys, write_resize
from engine.runtime.oci_runtime import StdioOptions


def session_pair(tmp_path: Path, tty: bool = True) -> tuple[AttachSession, socket.socket, Path]:
    ours, conmon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fifo = tmp_path / "ctl"
    os.mkfifo(fifo)
    return AttachSession(ours, fifo, tty=tty), conmon, fifo


def test_session_reads_streams_writes_stdin_and_sees_the_end(tmp_path: Path) -> None:
    session, conmon, _ = session_pair(tmp_path)
    conmon.send(b"\x02hello")
    conmon.send(b"\x03oops")
    assert session.read(timeout=1) == ("stdout", b"hello")
    assert session.read(timeout=1) == ("stderr", b"oops")
    assert session.read(timeout=0) is None
    session.write(b"x" * 20000)
    got = b""
    while len(got) < 20000:
        packet = conmon.recv(65536)
        assert len(packet) <= 8192  # conmon reads 8 KiB packets
        got += packet
    assert got == b"x" * 20000
    session.close_stdin()
    assert conmon.recv(10) == b""  # EOF for conmon: it closes the container's stdin
    conmon.close()
    assert session.read(timeout=1) == ("", b"")
    session.close()
    session.close()


def test_resize_goes_to_the_ctl_fifo_and_is_checked(tmp_path: Path) -> None:
    session, _conmon, fifo = session_pair(tmp_path)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        session.resize(40, 120)
        assert os.read(reader, 100) == b"1 40 120\n"
        with pytest.raises(InvalidSpec, match="between 1 and 1000"):
            session.resize(0, 120)
        with pytest.raises(InvalidSpec):
            session.resize(10, 1001)
    finally:
        os.close(reader)
    with pytest.raises(Conflict, match="not running"):  # no reader: conmon is gone
        write_resize(fifo, 10, 10)


def test_detach_keys_parse_like_docker() -> None:
    assert parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-[") == b"\x01x\x00\x1b"
    for bad in ("ctrl-", "ctrl-1", "shift-a", "ab"):
        with pytest.raises(InvalidSpec, match="detach key"):
            parse_detach_keys(bad)


def test_detach_scanner_holds_back_partial_sequences() -> None:
    scanner = DetachScanner(b"\x10\x11")
    assert scanner.feed(b"ls\n") == (b"ls\n", False)
    assert scanner.feed(b"ab\x10") == (b"ab", False)  # might be the start of the sequence
    assert scanner.feed(b"c") == (b"\x10c", False)  # it was not: passed on
    assert scanner.feed(b"x\x10") == (b"x", False)
    assert scanner.feed(b"\x11rest") == (b"", True)
    assert scanner.feed(b"tail\x10") == (b"tail", False)
    assert scanner.flush() == b"\x10"
    assert DetachScanner(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def test_stdio_options_become_conmon_flags() -> None:
    assert StdioOptions().conmon_args() == []
    assert StdioOptions(terminal=True).conmon_args() == ["--terminal"]
    assert StdioOptions(stdin=True).conmon_args() == ["--stdin"]
    assert StdioOptions(terminal=True, stdin=True, leave_stdin_open=True).conmon_args() == [
        "--terminal",
        "--stdin",
        "--leave-stdin-open",
    ]
    assert StdioOptions(leave_stdin_open=True).conmon_args() == []  # no stdin: nothing to leave open
