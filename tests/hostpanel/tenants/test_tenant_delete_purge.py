"""Deleting a tenant (API, admin site, manage command) purges it on every host, also on a host that
was down at the time; a new tenant re-using the slug starts empty. Real engines, one per host, each
purged by its enrolled agent (the panel's internal API in this process)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from engine.cgroups.resources import Resources
from engine.engine import Engine
from engine.errors import ImageNotFound
from engine.runtime.model import ContainerSpec
from engine.volumes.spec import MountSpec
from hostpanel.agent import tenant_purge
from hostpanel.audit.services import Actor
from hostpanel.errors import Conflict
from hostpanel.hosts import services as hosts
from hostpanel.hosts.models import Host, TenantPurge
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import Tenant
from tests.engine.conftest import leaks
from tests.engine.privileged.test_build import build, write_context
from tests.hostpanel.factories import HostFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = [pytest.mark.django_db, pytest.mark.privileged]
DOCKERFILE = 'FROM busybox\nRUN echo first-acme > /marker\nCMD ["cat", "/marker"]\n'


@pytest.fixture
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """Hosts h1 (up) and h2 (down), each with its own real engine."""
    HostFactory(name="h1")
    HostFactory(name="h2", state=Host.State.DOWN)
    made = {}
    for name in ("h1", "h2"):
        made[name] = Engine(root=tmp_path_factory.mktemp(name), instance=f"hpt-{secrets.token_hex(4)}")
        made[name].images.bootstrap_busybox()
    yield made
    for eng in made.values():
        for c in eng.list(all=True):
            eng.remove(c.id, force=True)
        for n in eng.network_list():
            eng.network_remove(n.name)
        assert not leaks(eng.paths.root, eng.instance)


def give(engine: Engine, tenant: str, context: Path) -> None:
    """What a tenant leaves on a host: a built image and cache, a volume with data, a quota, a container."""
    build(engine, write_context(context, {"Dockerfile": DOCKERFILE}), f"{tenant}/app:v1", tenant=tenant)
    engine.set_tenant_quota(tenant, Resources(pids=64))
    engine.volume_create(f"{tenant}.data", tenant=tenant, size=16 * 1024 * 1024)
    data = MountSpec(kind="volume", source=f"{tenant}.data", target="/data")
    engine.run(
        ContainerSpec(
            image=f"{tenant}/app:v1",
            tenant=tenant,
            command=("sh", "-c", "echo s3cret > /data/f; sleep 600"),
            mounts=(data,),
        )
    )


def holds(engine: Engine, tenant: str) -> list[str]:
    """What ``engine`` still holds of ``tenant`` (empty when nothing)."""
    found = [f"container {c.name}" for c in engine.list(all=True) if c.tenant == tenant]
    found += [f"volume {v.name}" for v in engine.volume_list(tenant)]
    found += [f"network {n.name}" for n in engine.network_list(tenant)]
    found += [f"image {t}" for i in engine.images.list() for t in i.repo_tags if t.startswith(f"{tenant}/")]
    if engine.build_cache.entry_count(tenant):
        found.append("build cache")
    if engine.tenant_quota(tenant) != Resources():
        found.append("quota")
    if tenant in engine.containers.id_ranges.all():
        found.append("uid range")
    return found


Play = Callable[[list[tuple[int, str, str]]], None]


@pytest.fixture
def play(engines: dict[str, Engine], agents: EnrolledAgents) -> Play:
    """Play the agents: a sent purge wakes its host's agent, which purges what
    its desired document names (``purge_tenants``) from its engine and reports the outcomes with
    ``POST host/purged``, as the last step of its reconcile does (:func:`remote.reconcile`)."""

    def run_sent(sent: list[tuple[int, str, str]]) -> None:
        while sent:
            host_id, queue, slug = sent.pop(0)
            host = Host.objects.get(pk=host_id)
            assert queue == host.queue
            client = agents.client(host)
            doc = client.desired()
            assert slug in doc["purge_tenants"]
            tenant_purge.purge_listed(engines[host.name], client, doc["host"], doc["purge_tenants"])

    return run_sent


def test_delete_purges_every_host_and_a_reused_slug_starts_empty(
    engines: dict[str, Engine],
    play: Play,
    admin_actor: Actor,
    api: Callable[[Any], Any],
    on_commit: Any,
    sent_purges: list[tuple[int, str, str]],
    tmp_path: Path,
) -> None:
    acme = tenants.create_tenant(admin_actor, "acme")
    tenants.create_tenant(admin_actor, "other")
    for name, eng in engines.items():
        give(eng, "acme", tmp_path / name / "acme")
    give(engines["h1"], "other", tmp_path / "other")
    old_ranges = {n: e.containers.id_ranges.range_for("acme").base for n, e in engines.items()}

    with on_commit():
        assert api(admin_actor.user).delete(f"/api/v1/tenants/{acme.slug}/").status_code == 204
    assert [(Host.objects.get(pk=h).name, s) for h, _q, s in sent_purges] == [("h1", "acme")]  # h2 is down
    play(sent_purges)
    assert holds(engines["h1"], "acme") == []
    assert holds(engines["h2"], "acme") != []
    assert list(TenantPurge.objects.values_list("host__name", "tenant_slug")) == [("h2", "acme")]
    assert holds(engines["h1"], "other") != [] and engines["h1"].image("other/app:v1")

    # the slug stays taken while h2 holds the old tenant's things
    response = api(admin_actor.user).post("/api/v1/tenants/", {"slug": "acme"}, format="json")
    assert response.status_code == 409 and "h2" in response.json()["error"]["message"]
    with pytest.raises(Conflict):
        tenants.create_tenant(admin_actor, "acme")

    # h2 comes back: its first heartbeat sends the purge
    h2 = Host.objects.get(name="h2")
    with on_commit():
        hosts.heartbeat(h2.pk)
    assert [s for _h, _q, s in sent_purges] == ["acme"]
    play(sent_purges)
    assert holds(engines["h2"], "acme") == [] and not TenantPurge.objects.exists()
    hosts.heartbeat(h2.pk)
    assert sent_purges == []  # nothing pending, nothing sent

    # a new acme starts empty on both hosts
    tenants.create_tenant(admin_actor, "acme")
    for name, eng in engines.items():
        with pytest.raises(ImageNotFound):
            eng.image("acme/app:v1")
        assert eng.containers.id_ranges.range_for("acme").base != old_ranges[name]
        result, _ = build(
            eng,
            write_context(tmp_path / name / "new", {"Dockerfile": DOCKERFILE}),
            "acme/app:v1",
            tenant="acme",
        )
        assert result.cached_steps == 0
        eng.volume_create("acme.data", tenant="acme", size=16 * 1024 * 1024)
        c = eng.run(
            ContainerSpec(
                image="busybox",
                tenant="acme",
                command=("sh", "-c", "cat /data/f 2>/dev/null || echo nothing"),
                mounts=(MountSpec(kind="volume", source="acme.data", target="/data"),),
            )
        )
        eng.wait(c.id, timeout=30)
        assert [line.text for line in eng.logs(c.id)] == ["nothing"]
        eng.purge_tenant("acme")
    engines["h1"].purge_tenant("other")


def test_a_failed_purge_keeps_its_row_and_is_sent_again(
    engines: dict[str, Engine],
    play: Play,
    admin_actor: Actor,
    on_commit: Any,
    sent_purges: list[tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    acme = tenants.create_tenant(admin_actor, "acme")
    give(engines["h1"], "acme", tmp_path)
    with on_commit():
        tenants.delete_tenant(admin_actor, acme)
    real = Engine.purge_tenant

    def busy(self: Engine, tenant: str) -> Any:
        from engine.errors import Conflict as EngineConflict

        raise EngineConflict(f"tenant {tenant!r}: processes still run")

    monkeypatch.setattr(Engine, "purge_tenant", busy)
    play(sent_purges)
    row = TenantPurge.objects.get(host__name="h1")
    assert row.attempts == 1 and "processes still run" in row.last_error
    monkeypatch.setattr(Engine, "purge_tenant", real)
    past = timezone.now() - timedelta(seconds=hosts.PURGE_RESEND_SECONDS + 1)
    TenantPurge.objects.filter(pk=row.pk).update(sent_at=None, attempted_at=past)  # as after the resend delay
    with on_commit():
        hosts.heartbeat(Host.objects.get(name="h1").pk)
    play(sent_purges)
    assert holds(engines["h1"], "acme") == []
    assert list(TenantPurge.objects.values_list("host__name", flat=True)) == ["h2"]


def test_admin_site_and_manage_command_delete_through_the_service(
    engines: dict[str, Engine], admin_actor: Actor, on_commit: Any, sent_purges: list[tuple[int, str, str]]
) -> None:
    first = tenants.create_tenant(admin_actor, "first")
    tenants.create_tenant(admin_actor, "second")
    client = Client()
    client.force_login(admin_actor.user)
    with on_commit():
        response = client.post(f"/admin/tenants/tenant/{first.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Tenant.objects.filter(slug="first").exists()
    with on_commit():
        call_command("delete_tenant", "second", "--as", admin_actor.user.username, "--yes")
    assert not Tenant.objects.filter(slug="second").exists()
    assert sorted((Host.objects.get(pk=h).name, s) for h, _q, s in sent_purges) == [
        ("h1", "first"),
        ("h1", "second"),
    ]
    assert sorted(TenantPurge.objects.values_list("host__name", "tenant_slug")) == [
        ("h1", "first"),
        ("h1", "second"),
        ("h2", "first"),
        ("h2", "second"),
    ]
