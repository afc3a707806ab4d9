"""The agent: restart back-off, health checks and readiness (agent/remote.py).

Each cycle is the real round trip: the host's document from ``GET /internal/v1/host/desired``
(as JSON), applied to an in-memory engine without one database query, and its states posted to
``POST /internal/v1/host/report``, so what the agent keeps between reconciles (its replicas'
restart streaks and health) lives where the test reads it: on the panel's replica rows. Probes
run in the agent's probe pool; the engine runs network probes "inside the container" by calling
them here (the container's address is 127.0.0.1).
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.utils import timezone

from hostpanel.deployments import rotation
from hostpanel.deployments.models import Replica
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import Agent, as_host, place

pytestmark = pytest.mark.django_db
Hosts = dict[str, tuple[X25519PrivateKey, str]]


def test_a_crash_is_restarted_after_the_same_backoff_as_with_the_database(
    agent: Agent, tenant: Tenant, make_app: Any, settings: Any
) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 10
    replica = place(make_app(tenant, restart_policy="always"))
    agent.cycle()
    agent.engine.crash("acme-web-0", 2)
    report, _ = agent.cycle()
    assert report.restarted == [] and report.retry_in is not None and 9 < report.retry_in <= 10
    replica.refresh_from_db()
    assert replica.state == "backoff" and replica.exit_code == 2 and replica.next_restart_at is not None
    due = replica.next_restart_at
    report, _ = agent.cycle()  # still waiting: the due time the panel keeps does not move
    assert report.restarted == [] and Replica.objects.get(pk=replica.pk).next_restart_at == due

    Replica.objects.filter(pk=replica.pk).update(next_restart_at=timezone.now() - timedelta(seconds=1))
    report, _ = agent.cycle()
    assert report.restarted == ["acme-web-0"]
    replica.refresh_from_db()
    assert (replica.state, replica.restart_count, replica.crash_streak) == ("running", 1, 1)
    assert replica.next_restart_at is None

    agent.engine.crash("acme-web-0", 2)  # a second crash in the streak: twice the wait
    report, _ = agent.cycle()
    assert report.retry_in is not None and 19 < report.retry_in <= 20

    settings.HOSTPANEL_RESTART_BACKOFF_RESET = 0  # it ran long enough: the streak starts again
    Replica.objects.filter(pk=replica.pk).update(next_restart_at=None)
    report, _ = agent.cycle()
    assert report.retry_in is not None and 9 < report.retry_in <= 10


def test_on_failure_stops_restarting_after_its_retries(
    agent: Agent, tenant: Tenant, make_app: Any, settings: Any
) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 0
    replica = place(make_app(tenant, restart_policy="on-failure:1"))
    agent.cycle()
    agent.engine.crash("acme-web-0", 1)
    assert agent.cycle()[0].restarted == ["acme-web-0"]
    agent.engine.crash("acme-web-0", 1)
    assert agent.cycle()[0].restarted == []  # its one retry is used up
    replica.refresh_from_db()
    assert (replica.state, replica.restart_count) == ("exited", 1)


def test_a_health_check_runs_in_the_probe_pool_and_an_unhealthy_replica_is_restarted(
    agent: Agent, tenant: Tenant, make_app: Any
) -> None:
    check = {"command": ["check"], "interval": 30, "timeout": 1, "retries": 2}
    app = make_app(tenant, health_check=check)
    replica = place(app)

    def due() -> None:  # the next check is due now (its interval passed)
        Replica.objects.filter(pk=replica.pk).update(health_checked_at=timezone.now() - timedelta(seconds=31))

    agent.cycle()
    report, _ = agent.cycle()
    replica.refresh_from_db()
    assert replica.health == "starting" and replica.health_checked_at is not None and not replica.ready
    assert report.retry_in == 30 and agent.engine.execs == []  # first check one interval later

    due()
    report, _ = agent.cycle()  # submitted to the pool, never run in the reconcile
    assert report.retry_in == 1
    agent.probes_done()
    assert agent.engine.execs == [("check",)]
    agent.cycle()
    replica.refresh_from_db()
    assert (replica.health, replica.health_failures, replica.ready) == ("healthy", 0, True)
    assert [r.pk for r in rotation.serving_replicas(app)] == [replica.pk]

    agent.engine.exec_exit_code = 1
    for failures in (1, 2):
        due()
        agent.cycle()
        agent.probes_done()
        report, states = agent.cycle()
        replica.refresh_from_db()
        if failures == 1:
            assert (replica.health, replica.health_failures) == ("healthy", 1)
    # two failures in a row: unhealthy, and restarted by its policy at once
    assert report.restarted == ["acme-web-0"]
    assert states[replica.pk]["message"] == "restarted after 2 failed health checks"
    assert (replica.health, replica.health_failures, replica.ready) == ("starting", 0, False)
    assert replica.restart_count == 1 and list(rotation.serving_replicas(app)) == []


def test_an_unhealthy_replica_with_policy_no_is_left_running_out_of_the_rotation(
    agent: Agent, tenant: Tenant, make_app: Any
) -> None:
    app = make_app(tenant, restart_policy="no", health_check={"command": ["check"], "retries": 1})
    replica = place(app)
    agent.engine.exec_exit_code = 1
    agent.cycle()
    agent.cycle()
    Replica.objects.filter(pk=replica.pk).update(health_checked_at=timezone.now() - timedelta(seconds=31))
    agent.cycle()
    agent.probes_done()
    report, states = agent.cycle()
    replica.refresh_from_db()
    assert report.restarted == [] and replica.health == "unhealthy" and replica.state == "running"
    assert states[replica.pk]["message"] == "unhealthy: 1 failed health checks"
    assert list(rotation.serving_replicas(app)) == []


def test_an_http_replica_joins_the_rotation_once_its_port_accepts(
    agent: Agent, tenant: Tenant, make_app: Any, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    app = make_app(tenant, command=["httpd", "-f", "-p", str(port)], http_port=port)
    replica = place(app)
    agent.cycle()
    assert list(rotation.serving_replicas(app)) == []  # started, not yet probed
    report, _ = agent.cycle()
    assert report.retry_in is not None  # it comes back soon while the replica is not ready
    agent.probes_done()
    agent.cycle()
    assert [r.pk for r in rotation.serving_replicas(app)] == [replica.pk]
    report, _ = agent.cycle()
    assert report.retry_in is None  # ready: no more probes


def test_an_http_replica_whose_port_refuses_stays_out_of_the_rotation(
    agent: Agent, tenant: Tenant, make_app: Any
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app(tenant, http_port=port)
    replica = place(app)
    for _ in range(3):
        agent.cycle()
        agent.probes_done()
    assert list(rotation.serving_replicas(app)) == []
    assert Replica.objects.get(pk=replica.pk).state == "running"


def test_a_host_cannot_report_on_another_hosts_replica_nor_send_bad_values(
    enrolled: Hosts, tenant: Tenant, make_app: Any
) -> None:
    mine = place(make_app(tenant, http_port=8080), "sa")
    theirs = place(make_app(tenant, name="api", http_port=8080), "sb")
    Replica.objects.filter(pk__in=[mine.pk, theirs.pk]).update(state="running")
    client = as_host(enrolled["sa"][1])
    healthy = {"state": "running", "health": "healthy", "ready": True, "health_failures": 0}

    def report(*entries: dict[str, Any]) -> Any:
        return client.post("/internal/v1/host/report", {"replicas": list(entries)}, format="json")

    forged = report({"replica": theirs.pk, "generation": theirs.generation, **healthy})
    assert forged.status_code == 200 and forged.json() == {"written": [], "ignored": [theirs.pk]}
    theirs_now = Replica.objects.get(pk=theirs.pk)
    assert (theirs_now.health, theirs_now.ready) == ("", False)

    entry = {"replica": mine.pk, "generation": mine.generation, "state": "running"}
    for bad, word in (
        ({"health": "dead"}, "health"),
        ({"health_failures": -1}, "health_failures"),
        ({"health_failures": 2**40}, "health_failures"),
        ({"crash_streak": "x"}, "crash_streak"),
        ({"restart_count": 2**31}, "restart_count"),
        ({"ready": "yes"}, "ready"),
        ({"ready": 1}, "ready"),
        ({"ready": True, "state": "exited"}, "only a running replica can be ready"),
        ({"health_checked_at": "yesterday"}, "health_checked_at"),
        ({"next_restart_at": 5}, "next_restart_at"),
    ):
        # a good entry in the same report is not written either: all or nothing
        refused = report({**entry, **healthy}, {**entry, **bad})
        assert refused.status_code == 400 and word in refused.content.decode(), (bad, refused.content)
    unchanged = Replica.objects.get(pk=mine.pk)
    assert (unchanged.health, unchanged.ready, unchanged.health_failures) == ("", False, 0)
    assert (unchanged.crash_streak, unchanged.restart_count, unchanged.next_restart_at) == (0, 0, None)

    ok = report({**entry, **healthy, "health_checked_at": timezone.now().isoformat()})
    assert ok.status_code == 200 and ok.json()["written"] == [mine.pk]
    assert Replica.objects.get(pk=mine.pk).ready is True
