"""The agent's readiness gate for a replica serving HTTP without a health check: a TCP connect.
The agent is an enrolled one (no database: hostpanel/agent/remote.py); a probe's result is
reported by the reconcile after the one that submitted it.

The in-memory engine runs the probe "inside the container" by calling it here, so
the container's address is 127.0.0.1 and its ``http_port`` is a socket this test
listens on (or not).
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.deployments import rotation
from hostpanel.deployments.models import Replica
from hostpanel.edge.services import published
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import NetEngine

pytestmark = pytest.mark.django_db


def tables() -> int:
    """How many routing tables the edge was given (an agent's report that changed which replicas
    serve publishes one: hostpanel/edge/apps.py)."""
    return published().generation


def test_a_replica_joins_the_rotation_once_its_http_port_accepts_and_the_edge_hears_of_it(
    tenant: Tenant,
    host: Host,
    make_app: Any,
    listener: socket.socket,
    on_commit: Any,
    agents: EnrolledAgents,
) -> None:
    port = listener.getsockname()[1]
    Host.objects.filter(pk=host.pk).update(address="192.0.2.1")  # the edge's upstream
    app = make_app(
        tenant, command=["httpd", "-f", "-p", str(port)], http_port=port, ports=[{"container_port": port}]
    )
    engine = NetEngine()
    with on_commit():
        report = agents.reconcile(engine, host)
    assert report.started == ["acme-web-0"]
    with on_commit():
        report = agents.reconcile(engine, host)  # the probe is submitted (inline here)
    assert report.retry_in is not None  # it comes back soon while the replica is not ready
    assert list(rotation.serving_replicas(app)) == []  # started, probed, not yet reported
    before = tables()
    with on_commit():
        agents.reconcile(engine, host)  # its result is reported
    (replica,) = rotation.serving_replicas(app)
    assert replica.ready and tables() == before + 1
    assert published().table["routes"] == {"web-acme.localhost": [[f"h{host.pk}", 30000]]}  # its upstream
    with on_commit():
        agents.reconcile(engine, host)
    assert tables() == before + 1  # probed once: no more probes, no more tables


def test_a_replica_whose_http_port_refuses_stays_out_of_the_rotation(
    tenant: Tenant, host: Host, make_app: Any, on_commit: Any, agents: EnrolledAgents
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app(tenant, command=["sleep", "3600"], http_port=port)
    engine = NetEngine()
    for _ in range(4):
        with on_commit():
            report = agents.reconcile(engine, host)
    assert report.retry_in is not None
    assert list(rotation.serving_replicas(app)) == []
    assert Replica.objects.get(app=app).state == Replica.State.RUNNING


def test_a_restarted_container_must_pass_the_gate_again(
    tenant: Tenant, host: Host, make_app: Any, listener: socket.socket, settings: Any, agents: EnrolledAgents
) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 0
    port = listener.getsockname()[1]
    app = make_app(tenant, command=["httpd"], http_port=port, restart_policy="always")
    engine = NetEngine()
    for _ in range(3):  # started, probed, reported
        agents.reconcile(engine, host)
    assert rotation.serving_ids(app)
    engine.crash("acme-web-0")
    agents.reconcile(engine, host)  # restarted after its back-off
    replica = Replica.objects.get(app=app)
    assert replica.restart_count == 1 and not replica.ready


def test_with_a_health_check_the_first_passing_check_is_the_gate(
    tenant: Tenant,
    host: Host,
    make_app: Any,
    listener: socket.socket,
    on_commit: Any,
    agents: EnrolledAgents,
) -> None:
    port = listener.getsockname()[1]
    hc = {"tcp": {"port": port}, "interval": 1, "timeout": 1, "retries": 1}
    Host.objects.filter(pk=host.pk).update(address="192.0.2.1")  # the edge's upstream
    app = make_app(
        tenant, command=["httpd"], http_port=port, health_check=hc, ports=[{"container_port": port}]
    )
    engine = NetEngine()
    agents.reconcile(engine, host)  # started
    agents.reconcile(engine, host)  # health "starting": first check in 1 s
    assert list(rotation.serving_replicas(app)) == []

    def check() -> None:
        """A check falls due: one pass runs it (inline here), the next reports its result."""
        Replica.objects.filter(app=app).update(health_checked_at=timezone.now() - timedelta(seconds=2))
        for _ in range(2):
            with on_commit():
                agents.reconcile(engine, host)

    before = tables()
    check()
    (replica,) = rotation.serving_replicas(app)
    assert replica.health == "healthy" and replica.ready and tables() == before + 1
    listener.close()  # now it fails its check: out of the rotation, and the edge hears of it
    check()
    assert list(rotation.serving_replicas(app)) == [] and tables() == before + 2
