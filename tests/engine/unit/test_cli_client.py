"""`hpctl`'s C client (engine/cli/hpctl.c) against a scripted fake daemon: the request it sends is
the Python client's, the answer comes out byte for byte with its exit code, whatever the daemon
does not run goes to the Python hpctl unchanged, failures are said, and a hostile answer crashes
nothing. tests/engine/privileged/test_cli_daemon.py runs it against the real daemon."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli.remote import CONTENT_TYPE, ENDPOINT, request_body
from tests.engine.cli_support import REPO, FakeDaemon, build_c_client, chunked, frame, signal_and_wait

PYTHON_SIDE = """
import json, os, sys
sys.stderr.write(json.dumps({"python": sys.argv[1:], "daemon": os.environ.get("HOSTPANEL_CLI_DAEMON")}))
sys.exit(42)
"""
"""Stands in for the Python hpctl: reports the command line it was handed."""

OK_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("c-client")
    script = directory / "python-side.py"
    script.write_text(PYTHON_SIDE)
    return build_c_client(directory, sys.executable, script)


@pytest.fixture()
def sock(tmp_path: Path) -> Path:
    return tmp_path / "daemon.sock"


def client_env(sock: Path, **env: str) -> dict[str, str]:
    """This process's environment without HostPanel's settings, the daemon on ``sock``, and ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOSTPANEL_")}
    return environ | {"HOSTPANEL_DOCKER_SOCKET": str(sock), **env}


def run(client: Path, sock: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(client), *argv],
        capture_output=True,
        env=client_env(sock, **env),
        cwd=REPO,
        timeout=60,
        check=False,
    )


def handed_to_python(done: subprocess.CompletedProcess[bytes]) -> list[str] | None:
    """The command line the Python side got, or None when the C client answered itself."""
    if done.returncode != 42:
        return None
    return list(json.loads(done.stderr)["python"])


def test_the_request_is_the_python_clients(client: Path, sock: Path) -> None:
    daemon = FakeDaemon(sock, OK_HEAD + chunked(frame(3, b"exit 0")))
    argv = ["--root", "/var/lib/x", "ps", "-a", "--format", "{{.ID}} é", ""]
    done = run(client, sock, *argv, HOSTPANEL_INSTANCE="blue")
    daemon.join()
    assert done.returncode == 0, done.stderr
    head, _, body = daemon.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == f"POST {ENDPOINT} HTTP/1.1".encode()
    assert f"Content-Type: {CONTENT_TYPE}".encode() in lines
    os.environ["HOSTPANEL_INSTANCE"] = "blue"
    try:
        cwd = os.getcwd()
        os.chdir(REPO)
        expected = request_body(argv)
    finally:
        os.chdir(cwd)
        del os.environ["HOSTPANEL_INSTANCE"]
    assert body == expected


def test_output_and_exit_code_pass_through_byte_for_byte(client: Path, sock: Path) -> None:
    frames = (
        frame(1, b"out \xff\x00 line\n")
        + frame(2, b"a warning\n")
        + frame(1, b"x" * 200_000)
        + frame(3, b"exit 3")
    )
    # one byte a chunk: every frame header and payload arrives split
    daemon = FakeDaemon(sock, OK_HEAD + chunked(*(frames[i : i + 1] for i in range(len(frames)))))
    done = run(client, sock, "logs", "c1")
    daemon.join()
    assert (done.returncode, done.stdout, done.stderr) == (
        3,
        b"out \xff\x00 line\n" + b"x" * 200_000,
        b"a warning\n",
    )


def test_an_answer_with_a_length_instead_of_chunks(client: Path, sock: Path) -> None:
    body = frame(1, b"ID\n") + frame(3, b"exit 0")
    daemon = FakeDaemon(sock, f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    done = run(client, sock, "ps", "-q")
    daemon.join()
    assert (done.returncode, done.stdout) == (0, b"ID\n")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        b"garbage\r\n\r\n",
        b"",
    ],
    ids=["not served", "an older daemon", "not HTTP", "closed at once"],
)
def test_what_the_daemon_does_not_run_goes_to_python_unchanged(
    client: Path, sock: Path, answer: bytes
) -> None:
    daemon = FakeDaemon(sock, answer)
    argv = ["--instance=x", "network", "create", "--subnet", "10.9.0.0/24", "n 1"]
    done = run(client, sock, *argv)
    daemon.join()
    assert handed_to_python(done) == argv


def test_no_daemon_goes_to_python(client: Path, sock: Path) -> None:
    assert handed_to_python(run(client, sock, "ps")) == ["ps"]  # no socket file
    sock.touch()  # a stale socket file: nobody listens
    assert handed_to_python(run(client, sock, "ps")) == ["ps"]


def test_daemon_off_goes_to_python_without_asking(client: Path, sock: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock))
    server.listen(1)
    server.setblocking(False)
    try:
        done = run(client, sock, "images", HOSTPANEL_CLI_DAEMON="0")
        assert handed_to_python(done) == ["images"]
        assert json.loads(done.stderr)["daemon"] == "0"  # passed on: the Python side stays in-process
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()


def test_a_failed_daemon_is_said_and_nothing_is_retried(client: Path, sock: Path) -> None:
    error = b'{"message": "boom"}\n'
    daemon = FakeDaemon(
        sock, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error)
    )
    done = run(client, sock, "stop", "c1")
    daemon.join()
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr == b'hpctl: the operator daemon failed (500): {"message": "boom"}\n'
    assert len(daemon.requests) == 1


def test_a_daemon_that_goes_away_mid_command(client: Path, sock: Path) -> None:
    daemon = FakeDaemon(sock, OK_HEAD + b"5\r\n" + frame(1, b"partial")[:5] + b"\r\n")
    done = run(client, sock, "run", "--rm", "busybox", "true")
    daemon.join()
    assert done.returncode == 1
    assert done.stderr.endswith(
        b"hpctl: the operator daemon closed the connection before the command ended\n"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (frame(3, b"container " + b"c" * 100_000) + frame(3, b"exit 4"), 4),  # an oversized control message
        (frame(3, b"exit 5" + b" " * 70_000), 5),  # so is this exit
        (bytes([1, 0, 0, 0, 255, 255, 255, 255]) + b"short", 1),  # a frame that claims 4 GiB, then the end
        (bytes([9, 0, 0, 0, 0, 0, 0, 3]) + b"abc" + frame(3, b"exit 6"), 6),  # an unknown stream: skipped
    ],
    ids=["long control", "long exit", "huge frame", "unknown stream"],
)
def test_hostile_answers_crash_nothing(client: Path, sock: Path, body: bytes, code: int) -> None:
    daemon = FakeDaemon(sock, OK_HEAD + chunked(body))
    done = run(client, sock, "ps")
    daemon.join()
    assert done.returncode == code, done
    assert done.stdout == (b"short" if code == 1 else b"")
    assert done.stderr == (
        b"hpctl: the operator daemon closed the connection before the command ended\n" if code == 1 else b""
    )


def test_hostile_chunk_sizes_and_headers(client: Path, sock: Path) -> None:
    daemon = FakeDaemon(
        sock,
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffff\r\n" + frame(1, b"hi\n"),
    )
    done = run(client, sock, "ps")
    daemon.join()
    assert (done.returncode, done.stdout) == (1, b"hi\n")


def test_a_foreground_run_forwards_signals_to_its_container(client: Path, sock: Path, tmp_path: Path) -> None:
    """After the daemon names the run's container, SIGINT/SIGTERM/SIGHUP become `kill -s SIG <id>`
    requests (with the same --root/--instance), and the run goes on until the daemon's exit."""
    named = tmp_path / "named"

    def foreground(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(OK_HEAD + chunked(frame(3, b"container abc123"), last=False))
        named.touch()
        deadline = time.monotonic() + 30
        while len(daemon.requests) < 2 and time.monotonic() < deadline:  # the kill request came
            time.sleep(0.01)
        conn.sendall(chunked(frame(1, b"caught\n"), frame(3, b"exit 7")))

    killed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(frame(3, b"exit 0"))
    daemon = FakeDaemon(sock, foreground, killed)
    proc = subprocess.Popen(
        [str(client), "--root", "/r", "--instance=i", "run", "--rm", "busybox", "sleep", "9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(sock),
    )
    deadline = time.monotonic() + 30
    while not named.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the client reads the container's name
    out, err = signal_and_wait(proc, signal.SIGTERM, timeout=30)
    daemon.join()
    assert (proc.returncode, out, err) == (7, b"caught\n", b"")
    kill = daemon.requests[1].partition(b"\r\n\r\n")[2].split(b"\0")
    assert kill[kill.index(b"") + 1 :] == [
        b"--root",
        b"/r",
        b"--instance=i",
        b"kill",
        b"-s",
        b"SIGTERM",
        b"abc123",
    ]


def test_an_interrupt_before_the_container_is_named_ends_the_client(client: Path, sock: Path) -> None:
    def silent(conn: socket.socket, _request: bytes) -> None:
        time.sleep(2)

    daemon = FakeDaemon(sock, silent)
    proc = subprocess.Popen([str(client), "ps"], env=client_env(sock))
    deadline = time.monotonic() + 30
    while not daemon.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130  # what the Python client's KeyboardInterrupt returns
    daemon.join()


def test_make_install_installs_the_c_client_before_the_python_one() -> None:
    """.venv/bin/hpctl is the C client built from engine/cli/hpctl.c, handing what the daemon does
    not run to this venv's python and its hpctl-py (Makefile: the hpctl target)."""
    bin_dir = Path(sys.executable).parent
    installed = (bin_dir / "hpctl").read_bytes()
    assert installed.startswith(b"\x7fELF")
    assert f"{bin_dir.absolute()}/python\0".encode() in installed
    assert f"{bin_dir.absolute()}/hpctl-py\0".encode() in installed
    assert (bin_dir / "hpctl-py").is_file()
