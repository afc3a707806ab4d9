"""Pure pieces of the interactive and archive endpoints: relays over socketpairs, stat headers."""

from __future__ import annotations

import base64
import io
import json
import socket
import stat
import struct
import threading

import pytest

from engine.dockerapi.container_copy import GO_DIR, GO_SYMLINK, _BodyReader, go_file_mode, path_stat_header
from engine.dockerapi.create import parse_create
from engine.dockerapi.http import APIError
from engine.dockerapi.interactive import spec_fields
from engine.dockerapi.ptyexec import console_size, with_term
from engine.dockerapi.streams import relay
from engine.runtime.copy import PathStat
from engine.runtime.model import ExecSpec


class FakeProcess:
    """An endpoint: scripted output, and what was typed."""

    def __init__(self, output: list[tuple[str, bytes]]) -> None:
        self.output = list(output)
        self.typed = b""
        self.stdin_closed = threading.Event()
        self.release = threading.Event()

    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        if self.output:
            return self.output.pop(0)
        if self.release.wait(timeout or 0):
            return "", b""
        return None

    def write(self, data: bytes) -> None:
        self.typed += data

    def close_stdin(self) -> None:
        self.stdin_closed.set()
        self.release.set()


def client_and_server() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_multiplexed_relay_frames_streams_and_forwards_stdin_until_eof() -> None:
    process = FakeProcess([("stdout", b"out"), ("stderr", b"err")])
    client, server = client_and_server()
    client.sendall(b"typed")
    client.shutdown(socket.SHUT_WR)
    rfile = server.makefile("rb")
    why = relay(process, rfile, server, raw=False, stdin=True)
    assert why == "exited"
    assert process.typed == b"typed" and process.stdin_closed.is_set()
    got = read_all(client)
    assert got == struct.pack(">BxxxL", 1, 3) + b"out" + struct.pack(">BxxxL", 2, 3) + b"err"


def test_raw_relay_skips_unwanted_streams_and_detach_keys_end_it() -> None:
    process = FakeProcess([("stdout", b"shown"), ("stderr", b"hidden")])
    client, server = client_and_server()
    client.sendall(b"ls\x10\x11after")
    ended: list[str] = []
    why = relay(
        process, server.makefile("rb"), server, raw=True, stdin=True, stderr=False, before_close=ended.append
    )
    assert why == "detached" and ended == ["detached"]
    assert process.typed == b"ls"  # nothing after the detach keys reaches the process
    assert not process.stdin_closed.is_set()  # detaching is not end of input
    assert b"hidden" not in read_all(client)


def test_raw_relay_sends_only_the_wanted_streams() -> None:
    process = FakeProcess([("stdout", b"shown"), ("stderr", b"hidden"), ("stdout", b"!"), ("", b"")])
    client, server = client_and_server()
    assert relay(process, server.makefile("rb"), server, raw=True, stdin=False, stderr=False) == "exited"
    assert read_all(client) == b"shown!"


def test_go_file_modes_match_what_the_cli_decodes() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == GO_DIR | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == GO_SYMLINK | 0o777
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFDIR | stat.S_ISVTX | 0o777) == GO_DIR | (1 << 20) | 0o777


def test_path_stat_header_is_base64_json() -> None:
    header = path_stat_header(
        PathStat(name="hosts", size=12, mode=stat.S_IFREG | 0o644, mtime=0.5, link_target="")
    )
    assert json.loads(base64.b64decode(header)) == {
        "name": "hosts",
        "size": 12,
        "mode": 0o644,
        "mtime": "1970-01-01T00:00:00.500000Z",
        "linkTarget": "",
    }


def test_body_reader_reassembles_chunks() -> None:
    reader = _BodyReader(iter([b"ab", b"cde", b"f"]))
    assert reader.read(3) == b"abc"
    assert reader.read(-1) == b"def"
    assert reader.read(1) == b""
    assert io.BytesIO(b"").read(1) == b""


def test_console_size_and_spec_fields() -> None:
    assert console_size({}) == (24, 80)
    assert console_size({"ConsoleSize": [30, 100]}) == (30, 100)
    with pytest.raises(APIError, match="ConsoleSize"):
        console_size({"ConsoleSize": "big"})
    req = parse_create({"Image": "busybox", "Tty": True, "OpenStdin": True, "StdinOnce": True})
    assert spec_fields(req) == {"tty": True, "open_stdin": True, "stdin_once": True}
    assert spec_fields(parse_create({"Image": "busybox", "StdinOnce": True})) == {
        "tty": False,
        "open_stdin": False,
        "stdin_once": False,
    }


def test_archive_stream_stops_its_producer_when_the_client_goes() -> None:
    from engine.dockerapi.container_copy import _tar_stream

    finished = threading.Event()

    class Engine:
        def copy_from(self, _cid: str, _path: str, out: io.BufferedIOBase) -> None:
            try:
                for _ in range(10_000):  # far more than the queue holds
                    out.write(b"x" * 65536)
            finally:
                finished.set()

    chunks = iter(_tar_stream(Engine(), "cid", "/big"))  # type: ignore[arg-type]
    assert next(chunks).startswith(b"x")
    chunks.close()  # type: ignore[attr-defined]  # the server closes the stream when the client is gone
    assert finished.wait(10)


def test_archive_stream_ends_early_when_the_export_fails() -> None:
    from engine.dockerapi.container_copy import _tar_stream

    class Engine:
        def copy_from(self, _cid: str, _path: str, out: io.BufferedIOBase) -> None:
            out.write(b"y" * 300_000)
            raise OSError("disk gone")

    assert b"".join(_tar_stream(Engine(), "cid", "/x")) == b"y" * 300_000  # type: ignore[arg-type]  # then cut off


def test_tty_exec_gets_a_term_unless_it_names_one() -> None:
    assert with_term(ExecSpec(command=("sh",))).env == ("TERM=xterm",)
    assert with_term(ExecSpec(command=("sh",), env=("TERM=vt100",))).env == ("TERM=vt100",)
