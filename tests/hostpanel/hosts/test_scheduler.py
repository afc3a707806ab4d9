"""The scheduler, heartbeats, down hosts and draining."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.deployments.models import Replica
from hostpanel.hosts import services
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import HostFactory

pytestmark = pytest.mark.django_db


def test_register_host_creates_then_refreshes(db: None) -> None:
    host = services.register_host("new", cpu_millis=2000, memory_bytes=2**30)
    assert host.state == Host.State.UP and host.last_heartbeat is not None
    again = services.register_host("new", cpu_millis=4000, memory_bytes=2**31)
    assert again.pk == host.pk and again.cpu_millis == 4000


def test_stale_host_goes_down_and_its_replicas_move(
    tenant: Tenant, make_app: Any, host: Host, settings: Any
) -> None:
    other = HostFactory(name="h2")
    app = make_app(tenant, replicas=2)
    assert {r.host_id for r in Replica.objects.filter(app=app)} == {host.pk, other.pk}
    Host.objects.filter(pk=host.pk).update(
        last_heartbeat=timezone.now() - timedelta(seconds=settings.HOSTPANEL_HOST_GRACE_SECONDS + 5)
    )
    down = services.mark_stale_hosts()
    assert [h.name for h in down] == ["h1"]
    assert Host.objects.get(pk=host.pk).state == Host.State.DOWN
    assert set(Replica.objects.filter(app=app).values_list("host__name", flat=True)) == {"h2"}
    assert services.mark_stale_hosts() == []  # idempotent


def test_replicas_wait_pending_with_reason_when_nothing_fits(
    tenant: Tenant, make_app: Any, host: Host
) -> None:
    app = make_app(tenant)
    Host.objects.filter(pk=host.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    services.mark_stale_hosts()
    replica = Replica.objects.get(app=app)
    assert replica.host is None and replica.state == Replica.State.PENDING
    assert "no host is up" in replica.message
    services.heartbeat(host.pk)  # it comes back
    replica.refresh_from_db()
    assert replica.host_id == host.pk and replica.state == Replica.State.STARTING


def test_draining_moves_replicas_away(tenant: Tenant, make_app: Any, host: Host, admin_actor: Any) -> None:
    app = make_app(tenant)
    HostFactory(name="h2")
    services.drain_host(admin_actor, host)
    assert Replica.objects.get(app=app).host.name == "h2"
    assert Host.objects.get(pk=host.pk).lifecycle == Host.Lifecycle.DRAINED  # nothing movable left


def test_capacity_counts_placed_replicas(tenant: Tenant, make_app: Any, host: Host) -> None:
    Host.objects.filter(pk=host.pk).update(cpu_millis=1000)
    make_app(tenant, "a", cpu_millis=600)
    from hostpanel.errors import NoCapacity

    with pytest.raises(NoCapacity):
        make_app(tenant, "b", cpu_millis=600)
    make_app(tenant, "c", cpu_millis=400)


def test_a_second_live_agent_cannot_take_a_hosts_name(db: None) -> None:
    from hostpanel.errors import Conflict

    services.register_host("dup", cpu_millis=1000, memory_bytes=2**30, engine_root="/a", engine_instance="x")
    services.register_host("dup", cpu_millis=1000, memory_bytes=2**30, engine_root="/a", engine_instance="x")
    with pytest.raises(Conflict, match="served by a live agent"):
        services.register_host(
            "dup", cpu_millis=1000, memory_bytes=2**30, engine_root="/b", engine_instance="y"
        )
    Host.objects.filter(name="dup").update(last_heartbeat=timezone.now() - timedelta(hours=1))
    services.register_host("dup", cpu_millis=1000, memory_bytes=2**30, engine_root="/b", engine_instance="y")
