"""Probe logic without containers: the status line only, no redirects, bounded reads, a fair pool."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from hostpanel.agent import probes
from hostpanel.agent.probes import HealthCheck, ProbeRunner, http_status


@pytest.fixture
def server() -> Iterator[tuple[socket.socket, list[bytes]]]:
    sock = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []
    yield sock, got
    sock.close()


def serve_once(
    sock: socket.socket, got: list[bytes], answer: bytes, *, hold: bool = False
) -> threading.Event:
    """Answer one connection; with ``hold`` keep it open (silent) until the returned event is set."""
    done = threading.Event()

    def run() -> None:
        conn, _ = sock.accept()
        got.append(conn.recv(4096))
        conn.sendall(answer)
        if hold:
            done.wait(10)
        conn.close()

    threading.Thread(target=run, daemon=True).start()
    return done


def test_a_redirect_is_an_answer_and_its_location_is_never_read(
    server: tuple[socket.socket, list[bytes]],
) -> None:
    sock, got = server
    port = sock.getsockname()[1]
    done = serve_once(sock, got, b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1:8000/x\r\n\r\n")
    result = http_status("127.0.0.1", port, "/health", 5)
    done.set()
    assert result == probes.ProbeResult(True, "HTTP 302")
    assert got[0].startswith(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1:")


@pytest.mark.parametrize(
    ("answer", "healthy", "reason"),
    [
        (b"HTTP/1.0 200 OK\r\n\r\nbody", True, "HTTP 200"),
        (b"HTTP/1.0 404 Not Found\r\n\r\n", False, "HTTP 404"),
        (b"HTTP/1.0 500 Oops\r\n\r\n", False, "HTTP 500"),
        (b"HTTP/1.0 101 Switching\r\n\r\n", False, "HTTP 101"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", False, "not an HTTP answer"),
        (b"", False, "not an HTTP answer"),
    ],
)
def test_status_codes(
    server: tuple[socket.socket, list[bytes]], answer: bytes, healthy: bool, reason: str
) -> None:
    sock, got = server
    done = serve_once(sock, got, answer)
    result = http_status("127.0.0.1", sock.getsockname()[1], "/", 5)
    done.set()
    assert result == probes.ProbeResult(healthy, reason)


def test_an_answer_that_never_ends_its_status_line_is_cut_at_the_deadline(
    server: tuple[socket.socket, list[bytes]],
) -> None:
    sock, got = server
    done = serve_once(
        sock, got, b"HTTP/1.0 2", hold=True
    )  # then nothing: the read ends at the probe's deadline
    with pytest.raises(TimeoutError):
        http_status("127.0.0.1", sock.getsockname()[1], "/", 0.2)
    done.set()


def test_defaults_fill_in_and_the_timeout_never_exceeds_the_interval() -> None:
    hc = HealthCheck.parse({"http": {"port": 80}, "interval": 2})
    assert (hc.kind, hc.port, hc.path, hc.interval, hc.timeout, hc.retries) == ("http", 80, "/", 2.0, 2.0, 3)
    assert HealthCheck.parse({"tcp": {"port": 5432}}).timeout == 5.0
    old = HealthCheck.parse(
        {"command": ["true"], "interval": 3600, "timeout": 7200}
    )  # stored before the bounds
    assert (old.interval, old.timeout) == (300.0, 300.0)


def test_the_pool_runs_one_probe_per_replica_and_a_share_per_tenant() -> None:
    runner = ProbeRunner(4, after_job=lambda: None)  # a tenant may hold 2 workers
    gate = threading.Event()
    assert runner.submit("a", 1, gate.wait)
    assert not runner.submit("a", 1, gate.wait)  # already in flight
    assert runner.submit("a", 2, gate.wait)
    assert not runner.submit("a", 3, gate.wait)  # tenant a holds its share
    ran = threading.Event()
    assert runner.submit("b", 4, ran.set)  # another tenant still gets a worker
    assert ran.wait(10)
    gate.set()
    runner.wait_idle(10)
    assert not runner.in_flight(1) and runner.submit("a", 3, lambda: None)
    runner.wait_idle(10)


def test_a_path_outside_the_rule_never_reaches_the_wire(server: tuple[socket.socket, list[bytes]]) -> None:
    sock, _ = server
    result = http_status("127.0.0.1", sock.getsockname()[1], "/x HTTP/1.1\r\nHost: panel", 1)
    assert result == probes.ProbeResult(False, "invalid path")
