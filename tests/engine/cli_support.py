"""What the tests of `hpctl`'s clients share: a scripted fake operator daemon, the answer's frames,
and the C client (engine/cli/hpctl.c) built as `make install` builds it, with its Python side
pointed wherever a test wants."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
C_CLIENT_SOURCE = REPO / "engine" / "cli" / "hpctl.c"

Answer = bytes | Callable[[socket.socket, bytes], None]
"""What the fake daemon does with one connection: send these bytes, or call this with the
connection and the request it read."""


def frame(stream: int, payload: bytes) -> bytes:
    """One multiplexed frame of the daemon's answer (engine/cli/remote.py)."""
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def chunked(*parts: bytes, last: bool = True) -> bytes:
    """``parts`` as HTTP/1.1 chunks, one each, then (``last``) the final empty chunk."""
    body = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in parts)
    return body + b"0\r\n\r\n" if last else body


def read_request(conn: socket.socket) -> bytes:
    """One HTTP request (head and Content-Length body) from ``conn``."""
    request = b""
    while b"\r\n\r\n" not in request:
        data = conn.recv(4096)
        if not data:
            return request
        request += data
    head, _, body = request.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += conn.recv(4096)
    return head + b"\r\n\r\n" + body


class FakeDaemon:
    """A server on ``path`` that reads one request per connection and answers with the next of
    ``answers``; ``requests`` holds what it read, in order."""

    def __init__(self, path: Path, *answers: Answer) -> None:
        self.requests: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(max(len(answers), 1))
        self.thread = threading.Thread(target=self._serve, args=(answers,), daemon=True)
        self.thread.start()

    def _serve(self, answers: tuple[Answer, ...]) -> None:
        handlers = []
        with self.server:
            for answer in answers:  # each connection answered in a thread of its own, as they come
                conn, _ = self.server.accept()
                handler = threading.Thread(target=self._answer, args=(conn, answer), daemon=True)
                handler.start()
                handlers.append(handler)
        for handler in handlers:
            handler.join()

    def _answer(self, conn: socket.socket, answer: Answer) -> None:
        with conn:
            request = read_request(conn)
            self.requests.append(request)
            if callable(answer):
                answer(conn, request)
            else:
                conn.sendall(answer)

    def join(self, timeout: float = 10) -> None:
        self.thread.join(timeout)


def request_body(request: bytes) -> bytes:
    return request.partition(b"\r\n\r\n")[2]


def build_c_client(directory: Path, python: str, script: Path) -> Path:
    """engine/cli/hpctl.c built into ``directory`` as the Makefile builds it, handing what the
    daemon does not run to ``python script``."""
    binary = directory / "hpctl"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(binary),
            str(C_CLIENT_SOURCE),
            f'-DHPCTL_PYTHON="{python}"',
            f'-DHPCTL_SCRIPT="{script}"',
        ],
        check=True,
        capture_output=True,
    )
    return binary


def signal_and_wait(proc: subprocess.Popen[Any], signum: int, timeout: float = 60) -> tuple[Any, Any]:
    """Send ``signum`` to ``proc`` and wait for its end: its stdout and stderr (killed if it hangs)."""
    try:
        proc.send_signal(signum)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
