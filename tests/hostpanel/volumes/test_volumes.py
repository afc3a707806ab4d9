"""Volumes: quota on count and bytes, tenant-prefixed engine names, made and removed by the
(enrolled) agents."""

from __future__ import annotations

from typing import Any

import pytest

from hostpanel.agent import deleted_volumes
from hostpanel.agent.deleted_volumes import LABEL_VOLUME_PROOF
from hostpanel.agent.host_engine import LABEL_VOLUME
from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.errors import Conflict, InvalidRequest, QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Quota, Role, Tenant
from hostpanel.volumes import held, services
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db
GIB = 1024**3


@pytest.fixture
def dev(tenant: Tenant) -> Actor:
    return Actor(user=MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user)


def test_quota_counts_volumes_and_bytes(tenant: Tenant, dev: Actor) -> None:
    Quota.objects.filter(tenant=tenant).update(volumes=2, disk_bytes=3 * GIB)
    services.create_volume(dev, tenant, "a", 2 * GIB)
    with pytest.raises(QuotaExceeded) as over:
        services.create_volume(dev, tenant, "b", 2 * GIB)
    assert over.value.details["over"] == [
        {
            "resource": "disk_bytes",
            "limit": 3 * GIB,
            "requested": 4 * GIB,
            "over_by": GIB,
            "unit": "bytes",
            "asked": 2 * GIB,
            "left": GIB,
            "text": "storage: 2 GiB asked, 1 GiB left",
        }
    ]
    services.create_volume(dev, tenant, "b", GIB)
    with pytest.raises(QuotaExceeded, match="volumes: 1 asked, 0 left"):
        services.create_volume(dev, tenant, "c", 4 * 1024**2)


def test_apps_mount_only_their_tenants_volumes(tenant: Tenant, dev: Actor, make_app: Any) -> None:
    Volume.objects.create(tenant=TenantFactory(slug="other"), name="theirs", size_bytes=GIB)
    with pytest.raises(InvalidRequest, match="has no volume 'theirs'"):
        make_app(tenant, volumes=[{"name": "theirs", "path": "/data"}])


def test_agent_creates_the_volume_with_its_cap_under_a_tenant_prefixed_name(
    tenant: Tenant, dev: Actor, host: Host, make_app: Any, admin_actor: Actor, agents: EnrolledAgents
) -> None:
    volume = services.create_volume(dev, tenant, "data", GIB)
    app = make_app(tenant, volumes=[{"name": "data", "path": "/data"}])
    engine = FakeEngine()
    agents.reconcile(engine, host)
    made = engine.volume("acme.data")
    assert made.size == GIB and made.tenant == "acme"
    assert made.labels == {
        LABEL_VOLUME: str(volume.pk),
        LABEL_VOLUME_PROOF: held.proof(volume.pk),
        "org.hostpanel.tenant": "acme",
    }
    (container,) = engine.list()
    (mount,) = engine.specs[container.id].mounts
    assert (mount.kind, mount.source, mount.target) == ("volume", "acme.data", "/data")
    with pytest.raises(Conflict, match="mounted by app"):
        services.delete_volume(dev, volume)
    deployments.delete_app(admin_actor, app)
    services.delete_volume(dev, Volume.objects.get())
    report = agents.reconcile(engine, host)
    assert engine.volume_list() == [] and "acme.data" in report.removed


def test_agent_keeps_a_deleted_volume_a_container_still_uses_and_volumes_it_was_not_given(
    tenant: Tenant, dev: Actor, host: Host, make_app: Any, agents: EnrolledAgents
) -> None:
    """Whatever the panel answers, a volume a container mounts stays (the engine refuses, the agent
    never forces), and so do an operator's volumes and panel volumes without a proof label."""
    volume = services.create_volume(dev, tenant, "data", GIB)
    make_app(tenant, volumes=[{"name": "data", "path": "/data"}])
    engine = FakeEngine()
    agents.reconcile(engine, host)
    engine.volume_create("mine", tenant="acme")  # an operator's
    engine.volume_create("acme.old", tenant="acme", labels={LABEL_VOLUME: "999999"})  # no proof
    Volume.objects.filter(pk=volume.pk).delete()  # behind the app's back: its container still mounts it
    client = agents.client(host)
    report = agents.reconcile(engine, host)
    assert sorted(v.name for v in engine.volume_list()) == ["acme.data", "acme.old", "mine"]
    assert report.removed == [] and not any(path == "host/volumes" for _, path, _ in client.calls)

    # a hostile or buggy answer naming it deleted while a container (stopped) still mounts it
    (container,) = engine.list()
    engine.stop(container.id)
    doc = {"replicas": []}  # nor does the document name the replica that mounts it

    class Hostile:
        def volumes_deleted(self, held: dict[int, str]) -> dict[str, Any]:
            return {"deleted": [volume.pk, 999999], "ignored": []}

    assert deleted_volumes.remove_deleted(engine, Hostile(), doc) == []  # type: ignore[arg-type]
    assert sorted(v.name for v in engine.volume_list()) == ["acme.data", "acme.old", "mine"]
    engine.remove(container.id)
    assert deleted_volumes.remove_deleted(engine, Hostile(), doc) == ["acme.data"]  # type: ignore[arg-type]
    assert sorted(v.name for v in engine.volume_list()) == ["acme.old", "mine"]


def test_quota_shows_volume_use(api: Any, tenant: Tenant, dev: Actor) -> None:
    services.create_volume(dev, tenant, "a", 2 * GIB)
    body = api(dev.user).get(f"/api/v1/tenants/{tenant.slug}/quota/").json()
    assert body["usage"]["volumes"] == 1 and body["usage"]["disk_bytes"] == 2 * GIB


def test_deleting_a_volume_makes_every_up_host_reconcile(
    tenant: Tenant,
    dev: Actor,
    sent_reconciles: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Its data may be on a host none of the tenant's replicas uses now: every host that is up
    removes what it holds (a host that is down does at its next reconcile)."""
    up = [HostFactory(name="v1"), HostFactory(name="v2")]
    HostFactory(name="v3", state=Host.State.DOWN)
    volume = services.create_volume(dev, tenant, "data", GIB)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_volume(dev, volume)
    assert sorted(host_id for host_id, _ in sent_reconciles) == sorted(h.pk for h in up)
    assert not Volume.objects.filter(pk=volume.pk).exists()
