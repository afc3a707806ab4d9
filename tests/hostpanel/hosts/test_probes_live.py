"""Health probes with real containers and the real (enrolled) agent code: from the container's side,
off the loop.

A hostile tenant's app answers its HTTP health check with a redirect to a
service on the host's loopback, or the test puts a service on the host's
127.0.0.1 at the probed port: the host's service must receive nothing. A probe
that never gets an answer must not hold up the reconcile of another replica.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ExecSpec
from hostpanel.agent import probes
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.engine.conftest import busybox, engine  # noqa: F401  (real engine fixtures)
from tests.hostpanel.factories import TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

PORT = 8080


class HostListener:
    """A TCP service on the host's 127.0.0.1 that answers 200 and records every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.connections.append(conn.recv(4096))
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[HostListener]:
    server = HostListener()
    yield server
    server.close()


@pytest.fixture
def live_probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[probes.ProbeRunner]:
    """The real probe pool (threads), instead of the unit tests' inline one."""
    runner = probes.ProbeRunner(6)  # a tenant may hold 3 workers
    monkeypatch.setattr(probes, "_runner", runner)
    yield runner
    runner.wait_idle(120)


def answering(port: int, reply: str) -> list[str]:
    """A container command answering ``reply`` (an HTTP head, \\r\\n escaped) on ``port``."""
    script = (
        "cat > /tmp/reply <<'EOF'\n"
        "#!/bin/sh\n"
        f"printf '{reply}'\n"
        "EOF\n"
        "chmod +x /tmp/reply\n"
        f"exec nc -ll -p {port} -e /tmp/reply\n"
    )
    return ["sh", "-c", script]


def waiting_for_go(port: int) -> list[str]:
    """A container command that accepts on ``port`` but answers only once /tmp/go exists."""
    script = (
        "cat > /tmp/reply <<'EOF'\n"
        "#!/bin/sh\n"
        "while [ ! -e /tmp/go ]; do sleep 0.1; done\n"
        "printf 'HTTP/1.0 200 OK\\r\\n\\r\\n'\n"
        "EOF\n"
        "chmod +x /tmp/reply\n"
        f"exec nc -ll -p {port} -e /tmp/reply\n"
    )
    return ["sh", "-c", script]


def make_due(*apps: App) -> None:
    Replica.objects.filter(app__in=apps).update(health_checked_at=timezone.now() - timedelta(seconds=301))


def started_and_listening(
    agents: EnrolledAgents,
    engine: Engine,  # noqa: F811
    host: Host,
    port: int,
    *apps: App,
) -> None:
    """Reconcile until every replica runs and marks its health "starting", and ``apps`` listen on ``port``."""
    agents.reconcile(engine, host)
    agents.reconcile(engine, host)
    for replica in Replica.objects.filter(app__in=apps):
        container = engine.get(replica.container_name)
        probe = ExecSpec(command=("sh", "-c", f"until netstat -ltn | grep -q ':{port} '; do sleep 0.1; done"))
        assert engine.exec(container.id, probe).wait(timeout=30) == 0


def probe_once(
    agents: EnrolledAgents,
    engine: Engine,  # noqa: F811
    host: Host,
    runner: probes.ProbeRunner,
    *apps: App,
) -> None:
    """One due check of ``apps``: submitted by a reconcile, run in the pool, reported by the next."""
    make_due(*apps)
    agents.reconcile(engine, host)
    runner.wait_idle(120)
    agents.reconcile(engine, host)


@pytest.mark.parametrize("network", ["none", "bridge"])
def test_a_redirect_to_the_hosts_loopback_is_never_followed(
    engine: Engine,  # noqa: F811
    busybox: Image,  # noqa: F811
    transactional_db: None,
    tenant: Tenant,
    host: Host,
    make_app: Any,
    listener: HostListener,
    live_probes: probes.ProbeRunner,
    agents: EnrolledAgents,
    network: str,
) -> None:
    location = f"http://127.0.0.1:{listener.port}/admin/"
    app = make_app(
        tenant,
        command=answering(
            PORT, f"HTTP/1.0 302 Found\\r\\nLocation: {location}\\r\\nContent-Length: 0\\r\\n\\r\\n"
        ),
        network=network,
        health_check={"http": {"port": PORT, "path": "/"}, "interval": 300, "timeout": 5, "retries": 1},
    )
    started_and_listening(agents, engine, host, PORT, app)
    probe_once(agents, engine, host, live_probes, app)
    replica = Replica.objects.get(app=app)
    assert replica.health == "healthy"  # a 3xx counts as an answer, as Kubernetes counts it ...
    assert listener.connections == []  # ... and the Location is never fetched


def test_127_0_0_1_is_the_container_not_the_host(
    engine: Engine,  # noqa: F811
    busybox: Image,  # noqa: F811
    transactional_db: None,
    tenant: Tenant,
    host: Host,
    make_app: Any,
    listener: HostListener,
    live_probes: probes.ProbeRunner,
    agents: EnrolledAgents,
) -> None:
    # Nothing listens on the host's port inside the container: a probe from the host side would
    # reach the test's listener (and say "healthy"); from the container's side it finds nothing.
    quiet = make_app(
        tenant,
        name="quiet",
        command=answering(PORT, "HTTP/1.0 200 OK\\r\\n\\r\\n"),
        health_check={"http": {"port": listener.port}, "interval": 300, "timeout": 5, "retries": 1},
    )
    tcp = make_app(
        tenant,
        name="tcp",
        command=answering(PORT, "HTTP/1.0 200 OK\\r\\n\\r\\n"),
        health_check={"tcp": {"port": listener.port}, "interval": 300, "timeout": 5, "retries": 1},
    )
    # The container answers 503 on the same port number the host's listener answers 200 on.
    own = make_app(
        tenant,
        name="own",
        command=answering(listener.port, "HTTP/1.0 503 Unavailable\\r\\n\\r\\n"),
        health_check={"http": {"port": listener.port}, "interval": 300, "timeout": 5, "retries": 1},
    )
    started_and_listening(agents, engine, host, PORT, quiet, tcp)
    started_and_listening(agents, engine, host, listener.port, own)
    probe_once(agents, engine, host, live_probes, quiet, tcp, own)
    # each failed its one check: unhealthy, so restarted by its policy in the same pass
    for replica in Replica.objects.all():
        assert replica.restart_count == 1 and "failed health check" in replica.message, replica.app.name
    assert listener.connections == []


def test_a_probe_that_hangs_does_not_hold_up_another_replica(
    engine: Engine,  # noqa: F811
    busybox: Image,  # noqa: F811
    transactional_db: None,
    tenant: Tenant,
    host: Host,
    make_app: Any,
    live_probes: probes.ProbeRunner,
    agents: EnrolledAgents,
) -> None:
    other = TenantFactory(slug="other")
    hanging = make_app(
        tenant,
        name="hang",
        command=waiting_for_go(PORT),
        health_check={"http": {"port": PORT}, "interval": 300, "timeout": 120, "retries": 1},
    )
    neighbour = make_app(other, name="web")
    started_and_listening(agents, engine, host, PORT, hanging)
    hang_replica = Replica.objects.get(app=hanging)
    neighbour_container = engine.get(Replica.objects.get(app=neighbour).container_name)
    engine.remove(neighbour_container.id, force=True)  # the neighbour needs the reconcile now

    make_due(hanging)
    before = Replica.objects.get(app=hanging).health_checked_at
    report = agents.reconcile(engine, host)  # the hanging replica comes first (created first) ...

    # ... its probe was submitted and still waits for an answer, yet the reconcile went on and returned:
    assert live_probes.in_flight(hang_replica.pk)
    assert report.started == ["other-web-0"]
    assert Replica.objects.get(app=neighbour).state == Replica.State.RUNNING
    assert Replica.objects.get(app=hanging).health_checked_at == before  # no result yet
    # a second reconcile does not queue a second probe of the same replica, nor wait
    assert agents.reconcile(engine, host).started == []
    assert live_probes.in_flight(hang_replica.pk)

    container = engine.get(hang_replica.container_name)
    assert engine.exec(container.id, ExecSpec(command=("touch", "/tmp/go"))).wait(timeout=30) == 0
    live_probes.wait_idle(120)
    assert not live_probes.in_flight(hang_replica.pk)
    agents.reconcile(engine, host)  # reports its result
    assert Replica.objects.get(app=hanging).health == "healthy"
