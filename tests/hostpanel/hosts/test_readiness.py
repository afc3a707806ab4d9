"""The agent's readiness gate for a replica serving HTTP without a health check: a TCP connect.

The in-memory engine runs the probe "inside the container" by calling it here, so
the container's address is 127.0.0.1 and its ``http_port`` is a socket this test
listens on (or not).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.agent import reconcile as agent
from hostpanel.deployments import rotation
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.fake_engine import NetEngine

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced() -> Iterator[list[int]]:
    seen: list[int] = []

    def listen(sender: Any, app_id: int, **kwargs: Any) -> None:
        seen.append(app_id)

    rotation.rotation_changed.connect(listen)
    yield seen
    rotation.rotation_changed.disconnect(listen)


def test_a_replica_joins_the_rotation_once_its_http_port_accepts_and_the_edge_hears_of_it(
    tenant: Tenant,
    host: Host,
    make_app: Any,
    listener: socket.socket,
    announced: list[int],
    on_commit: Any,
) -> None:
    port = listener.getsockname()[1]
    app = make_app(tenant, command=["httpd", "-f", "-p", str(port)], http_port=port)
    engine = NetEngine()
    report = agent.reconcile(engine, host)  # type: ignore[arg-type]
    assert report.started == ["acme-web-0"]
    assert list(rotation.serving_replicas(app)) == []  # started, not yet probed
    with on_commit():
        report = agent.reconcile(engine, host)  # type: ignore[arg-type]
    assert report.retry_in is not None  # it comes back soon while the replica is not ready
    (replica,) = rotation.serving_replicas(app)
    assert replica.ready and announced == [app.pk]
    with on_commit():
        agent.reconcile(engine, host)  # type: ignore[arg-type]
    assert announced == [app.pk]  # probed once: no more probes, no more announcements


def test_a_replica_whose_http_port_refuses_stays_out_of_the_rotation(
    tenant: Tenant, host: Host, make_app: Any, announced: list[int], on_commit: Any
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app(tenant, command=["sleep", "3600"], http_port=port)
    engine = NetEngine()
    for _ in range(3):
        with on_commit():
            report = agent.reconcile(engine, host)  # type: ignore[arg-type]
    assert report.retry_in is not None
    assert list(rotation.serving_replicas(app)) == [] and announced == []
    assert Replica.objects.get(app=app).state == Replica.State.RUNNING


def test_a_restarted_container_must_pass_the_gate_again(
    tenant: Tenant, host: Host, make_app: Any, listener: socket.socket, settings: Any
) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 0
    port = listener.getsockname()[1]
    app = make_app(tenant, command=["httpd"], http_port=port, restart_policy="always")
    engine = NetEngine()
    agent.reconcile(engine, host)  # type: ignore[arg-type]
    agent.reconcile(engine, host)  # type: ignore[arg-type]
    assert rotation.serving_ids(app)
    engine.crash("acme-web-0")
    agent.reconcile(engine, host)  # type: ignore[arg-type]  # restarted after its back-off
    replica = Replica.objects.get(app=app)
    assert replica.restart_count == 1 and not replica.ready


def test_with_a_health_check_the_first_passing_check_is_the_gate(
    tenant: Tenant,
    host: Host,
    make_app: Any,
    listener: socket.socket,
    announced: list[int],
    on_commit: Any,
) -> None:
    port = listener.getsockname()[1]
    hc = {"tcp": {"port": port}, "interval": 1, "timeout": 1, "retries": 1}
    app = make_app(tenant, command=["httpd"], http_port=port, health_check=hc)
    engine = NetEngine()
    agent.reconcile(engine, host)  # type: ignore[arg-type]  # started
    agent.reconcile(engine, host)  # type: ignore[arg-type]  # health "starting": first check in 1 s
    assert list(rotation.serving_replicas(app)) == []
    Replica.objects.filter(app=app).update(health_checked_at=timezone.now() - timedelta(seconds=2))
    with on_commit():
        agent.reconcile(engine, host)  # type: ignore[arg-type]  # the check runs (inline here) and passes
    (replica,) = rotation.serving_replicas(app)
    assert replica.health == "healthy" and replica.ready and announced == [app.pk]
    listener.close()  # now it fails its check: out of the rotation, and the edge hears of it
    Replica.objects.filter(app=app).update(health_checked_at=timezone.now() - timedelta(seconds=2))
    with on_commit():
        agent.reconcile(engine, host)  # type: ignore[arg-type]
    assert list(rotation.serving_replicas(app)) == [] and announced == [app.pk, app.pk]
