"""Item 8 through the (enrolled) host agent on a real engine: a replica filling `/` stops at its tenant's disk
(sized by the storage quota), and what it wrote counts against that quota."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from hostpanel.agent.usage import report_usage
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.errors import QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Quota, Tenant
from hostpanel.tenants.storage import check_storage, storage_use
from tests.conftest import require_privileged
from tests.engine.conftest import leaks
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = [pytest.mark.privileged, pytest.mark.django_db]

MiB = 1024**2


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A real engine as the host agent makes it (tenant limits required); fails the test if it leaks."""
    require_privileged()
    root = tmp_path_factory.mktemp("hpstorage")
    eng = Engine(root=root, instance=f"hpt-{secrets.token_hex(4)}")
    eng.require_tenant_limits()
    eng.images.bootstrap_busybox()
    yield eng
    for container in eng.list(all=True):
        eng.remove(container.id, force=True)
    assert not leaks(root, eng.instance)


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_replica_filling_root_stops_at_the_tenants_disk_and_counts_against_its_quota(
    engine: Engine,
    tenant: Tenant,
    host: Host,
    make_app: Callable[..., App],
    admin_actor: Any,
    tmp_path: Path,
    agents: EnrolledAgents,
) -> None:
    Quota.objects.filter(tenant=tenant).update(disk_bytes=96 * MiB)
    fill = "dd if=/dev/zero of=/fill bs=1M count=500; echo dd-exit=$?; sleep 3600"
    make_app(tenant, command=["sh", "-c", fill])
    agents.reconcile(engine, host)
    (container,) = engine.list()
    assert wait_for(lambda: any(line.text == "dd-exit=1" for line in engine.logs(container.id)))
    assert any("No space left on device" in line.text for line in engine.logs(container.id))
    disk = engine.tenant_storage(tenant.slug)
    assert disk.size == 96 * MiB and disk.used <= 96 * MiB
    report_usage(engine, agents.client(host))  # each tenant's disk here too
    used = storage_use(tenant)
    assert 50 * MiB < used.rootfs <= 96 * MiB
    with pytest.raises(QuotaExceeded, match="over its storage quota"):
        check_storage(tenant, 64 * MiB, "the image upload")
    deployments.delete_app(admin_actor, App.objects.get(tenant=tenant))
    agents.reconcile(engine, host)
    assert not Replica.objects.exists() and engine.list(all=True) == []
    assert not engine.tenant_storage(tenant.slug).mounted  # unmounted with the tenant's last container
