"""Parallel creates never take a tenant over its quota, nor a host over its capacity.

Each thread has its own database connection and its own transactions (``transaction=True``), all
released at once by a barrier, so the checks truly race: on PostgreSQL only the row locks
(tenants/locks.py: the tenant's row; deployments/placement.free_room: the up hosts' rows) keep them
apart; on SQLite, IMMEDIATE transactions do. ``make test`` runs this on PostgreSQL,
``make test-sqlite`` on SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.errors import NoCapacity, QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.tenants.models import Tenant
from hostpanel.volumes import services as volumes
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import HostFactory, TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def in_parallel(count: int, job: Callable[[int], Any]) -> list[Any]:
    """``job(i)`` for i in range(count), each in its own thread and connection, started together;
    each one's result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = job(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a create hung (a lock never released?)"
    return results


def outcomes(results: list[Any], refused: type[Exception]) -> tuple[int, int]:
    """(how many succeeded, how many were refused with ``refused``); any other error fails."""
    others = [r for r in results if isinstance(r, Exception) and not isinstance(r, refused)]
    assert not others, f"unexpected errors: {others!r}"
    failed = sum(isinstance(r, refused) for r in results)
    return len(results) - failed, failed


@pytest.fixture
def actor(admin_actor: Actor) -> Actor:
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    return admin_actor


def spec(**values: Any) -> deployments.AppSpec:
    return deployments.AppSpec(**({"image": "busybox:latest", "command": ["sleep", "3600"]} | values))


def test_parallel_app_creates_never_exceed_the_container_quota(actor: Actor) -> None:
    HostFactory(name="h1")
    tenant = TenantFactory(slug="racer", quota={"containers": 3})

    results = in_parallel(THREADS, lambda i: deployments.create_app(actor, tenant, f"app{i}", spec()))

    assert outcomes(results, QuotaExceeded) == (3, THREADS - 3)
    assert App.objects.filter(tenant=tenant).count() == 3
    assert Replica.objects.filter(app__tenant=tenant).count() == 3


def test_parallel_scale_ups_never_exceed_the_cpu_quota(actor: Actor) -> None:
    HostFactory(name="h1")
    tenant = TenantFactory(slug="scaler", quota={"cpu_millis": 1500})  # six replicas of 250
    apps = [deployments.create_app(actor, tenant, f"app{i}", spec()) for i in range(4)]

    results = in_parallel(len(apps), lambda i: deployments.scale(actor, apps[i], 2))

    assert outcomes(results, QuotaExceeded) == (2, 2)
    assert deployments.tenant_usage(Tenant.objects.get(pk=tenant.pk)).cpu_millis == 1500
    assert Replica.objects.filter(app__tenant=tenant).count() == 6


def test_parallel_volume_creates_never_exceed_the_volume_quota(actor: Actor) -> None:
    tenant = TenantFactory(slug="hoarder", quota={"volumes": 2})

    results = in_parallel(THREADS, lambda i: volumes.create_volume(actor, tenant, f"v{i}", 8 * 1024**2))

    assert outcomes(results, QuotaExceeded) == (2, THREADS - 2)
    assert Volume.objects.filter(tenant=tenant).count() == 2


def test_parallel_placements_never_give_a_host_more_than_it_has(actor: Actor) -> None:
    host = HostFactory(name="small", cpu_millis=1000)  # room for four replicas of 250 millicores
    tenants = [TenantFactory(slug=f"t{i}") for i in range(THREADS)]

    results = in_parallel(THREADS, lambda i: deployments.create_app(actor, tenants[i], "web", spec()))

    assert outcomes(results, NoCapacity) == (4, THREADS - 4)
    placed = Replica.objects.filter(host=host).select_related("release")
    assert sum(r.release.cpu_millis for r in placed) == 1000
    assert Host.objects.get(pk=host.pk).cpu_millis == 1000
