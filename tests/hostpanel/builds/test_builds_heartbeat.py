# ruff: noqa: F811  (the enrolled fixture is imported from tests/hostpanel/hosts/conftest.py)
"""A host's heartbeat sends its waiting builds (one function).

Every agent's heartbeat goes through hosts.services.heartbeat, whose ``host_beat`` signal runs
builds.services.dispatch_on_heartbeat: a build not sent yet (held back for its tenant's share, or
because the broker failed as it was sent) goes to ``build.<host>`` at that host's next beat, and
only to its own host's queue. The sends are recorded at the seam builds.dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.hosts import services as hosts
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.conftest import enrolled, redis_admin_url  # noqa: F401
from tests.hostpanel.hosts.enrolled_hosts import as_host

Hosts = dict[str, Any]
pytestmark = pytest.mark.django_db


def waiting(tenant: Tenant, host: str, name: str = "web:1") -> Build:
    """A queued build on ``host`` that was never sent (its message lost, or held back)."""
    return Build.objects.create(
        tenant=tenant, host=Host.objects.get(name=host), name=name, reference=f"{tenant.slug}/{name}"
    )


def beat(token: str) -> Any:
    return as_host(token).post("/internal/v1/heartbeat", {}, format="json")


def test_the_heartbeat_of_a_host_without_the_database_sends_its_own_waiting_builds(
    enrolled: Hosts, tenant: Tenant, sent_builds: list[tuple[int, str]], on_commit: Callable[[], Any]
) -> None:
    mine, theirs = waiting(tenant, "sa"), waiting(tenant, "sb")
    with on_commit():
        assert beat(enrolled["sa"][1]).status_code == 200
    assert sent_builds == [(mine.pk, "build.sa")]  # never another host's build, nor to its queue
    assert Build.objects.get(pk=theirs.pk).dispatched_at is None
    with on_commit():
        assert beat(enrolled["sa"][1]).status_code == 200
    assert sent_builds == [(mine.pk, "build.sa")]  # sent once: its message is on the queue
    with on_commit():
        assert beat(enrolled["sb"][1]).status_code == 200
    assert sent_builds == [(mine.pk, "build.sa"), (theirs.pk, "build.sb")]


def test_the_database_agents_heartbeat_sends_them_the_same_way(
    host: Host, tenant: Tenant, sent_builds: list[tuple[int, str]], on_commit: Callable[[], Any]
) -> None:
    build = Build.objects.create(tenant=tenant, host=host, name="web:1", reference="acme/web:1")
    with on_commit():
        hosts.heartbeat(host.pk)
    assert sent_builds == [(build.pk, "build.h1")]


def test_a_build_the_broker_failed_to_take_is_sent_at_the_next_heartbeat(
    enrolled: Hosts,
    tenant: Tenant,
    sent_builds: list[tuple[int, str]],
    on_commit: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    settings.HOSTPANEL_BUILD_SLOTS = 2  # a tenant's share: 1
    first, second = waiting(tenant, "sa", "a:1"), waiting(tenant, "sa", "b:1")

    def down(build_id: int, queue: str) -> None:
        raise ConnectionError("Redis is down")

    with monkeypatch.context() as outage:
        outage.setattr("hostpanel.builds.dispatch.send_build", down)
        with on_commit():
            assert services.dispatch_builds(Host.objects.get(name="sa")) == [first.pk]  # share: 1
    assert Build.objects.get(pk=first.pk).dispatched_at is None  # not marked sent: it was not
    with on_commit():
        assert beat(enrolled["sa"][1]).status_code == 200
    assert sent_builds == [(first.pk, "build.sa")]
    assert Build.objects.get(pk=second.pk).dispatched_at is None  # its tenant's share waits


def test_a_failing_dispatch_never_fails_the_heartbeat(
    enrolled: Hosts, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, on_commit: Callable[[], Any]
) -> None:
    def broken(host: Host) -> list[int]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "dispatch_builds", broken)
    waiting(tenant, "sa")
    with on_commit():
        answer = beat(enrolled["sa"][1])
    assert answer.status_code == 200 and answer.json()["fence"] == []
    assert Host.objects.get(name="sa").last_heartbeat is not None
