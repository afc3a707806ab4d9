"""Usage of an enrolled agent: ``POST /internal/v1/host/usage``.

The agent samples its engine (hostpanel/agent/usage.py, here on a fake engine, without one
database query) for the tenants its desired document names (``usage_tenants``), and the panel
writes the sample (usage.services.record_sample: cursors, hours, storage shares) only for
the tenants and apps the host may speak for. Everything else is a hostile host: ignored and
listed, or refused, and nothing is written. The real agent doing it is
tests/hostpanel/e2e/test_e2e_agent_api.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rest_framework.test import APIClient

from engine.cgroups.resources import Resources
from engine.cgroups.usage import Usage
from engine.runtime.model import ContainerSpec
from hostpanel.agent import usage as agent_usage
from hostpanel.audit.services import Actor
from hostpanel.builds.models import Build
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from hostpanel.tenants.storage import storage_use
from hostpanel.usage.models import (
    AppUsageHour,
    ContainerUsageCursor,
    TenantStorage,
    UsageCursor,
    UsageHour,
)
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import as_host
from tests.hostpanel.hosts.fake_engine import FakeEngine

Hosts = dict[str, tuple[X25519PrivateKey, str]]
GB = 1024**3
USAGE_MODELS = (UsageHour, AppUsageHour, UsageCursor, ContainerUsageCursor, TenantStorage)


class Report:
    """What a tenant or container reports, as the engine's usage record."""

    def __init__(self, usage: Usage) -> None:
        self.usage = usage


class BuildCache:
    def __init__(self) -> None:
        self.bytes: dict[str, int] = {}

    def tenant_bytes(self, tenant: str) -> int:
        return self.bytes.get(tenant, 0)


class UsageEngine(FakeEngine):
    """The fake engine with usage counters the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.tenant_counters: dict[str, Usage] = {}
        self.container_counters: dict[str, Usage] = {}
        self.samples = 0
        self.build_cache = BuildCache()

    def sample_usage(self) -> int:
        self.samples += 1
        return len(self.list())

    def tenant_usage(self, tenant: str) -> Report:
        return Report(self.tenant_counters.get(tenant, Usage()))

    def container_usage(self, ref: str) -> Usage:
        return self.container_counters.get(self.get(ref).id, Usage())


class FakeClient:
    """The agent's InternalClient: the desired document's usage tenants, and what it sent."""

    def __init__(self, tenants: list[str], storage: tuple[str, ...] = ()) -> None:
        self.tenants, self.storage = tenants, list(storage)
        self.sent: list[dict[str, Any]] = []

    def desired(self) -> dict[str, Any]:
        return {"usage_tenants": self.tenants, "storage_tenants": [*self.tenants, *self.storage]}

    def usage(self, body: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(json.loads(json.dumps(body)))  # what travels: JSON only
        return {"tenants": 0, "containers": 0, "ignored": {"tenants": [], "containers": []}}


def place(tenant: Tenant, make_app: Any) -> tuple[App, App, App]:
    """acme's web on sa; other's db and acme's api on sb: (web, db, api)."""
    web = make_app(tenant)
    db = make_app(TenantFactory(slug="other"), name="db")
    api = make_app(tenant, name="api")
    Replica.objects.filter(app=web).update(host=Host.objects.get(name="sa"))
    Replica.objects.filter(app__in=[db, api]).update(host=Host.objects.get(name="sb"))
    return web, db, api


def counters(cpu: float, mem_gb_seconds: float = 0.0, disk: int = 0) -> dict[str, Any]:
    return {"cpu_seconds": cpu, "memory_byte_seconds": mem_gb_seconds * GB, "disk_bytes": disk}


def tenant_entry(slug: str, cpu: float, mem: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"tenant": slug, **counters(cpu, mem), "rootfs_bytes": 7, "build_cache_bytes": 3, **extra}


def storage_entry(slug: str, build_cache: int) -> dict[str, Any]:
    """A tenant's storage only (no counters): what a host reports of a tenant that built there."""
    return {"tenant": slug, "rootfs_bytes": 0, "build_cache_bytes": build_cache}


def container_entry(cid: str, slug: str, app: int, cpu: float, **extra: Any) -> dict[str, Any]:
    return {"container": cid, "tenant": slug, "app": app, **counters(cpu, 1.0), **extra}


def nothing_written() -> bool:
    return not any(model.objects.exists() for model in USAGE_MODELS)


@pytest.mark.django_db
def test_the_desired_document_names_the_tenants_a_host_samples(
    enrolled: Hosts, tenant: Tenant, make_app: Any
) -> None:
    """Tenants with replicas on the host, plus those with a usage cursor there (apps moved away:
    billed up to their last sample); nothing of the other hosts' tenants."""
    place(tenant, make_app)
    a, b = as_host(enrolled["sa"][1]), as_host(enrolled["sb"][1])
    assert a.get("/internal/v1/host/desired").json()["usage_tenants"] == ["acme"]
    assert b.get("/internal/v1/host/desired").json()["usage_tenants"] == ["acme", "other"]
    moved = TenantFactory(slug="moved")
    UsageCursor.objects.create(tenant=moved, host=Host.objects.get(name="sa"), collected_at=datetime.now(UTC))
    assert a.get("/internal/v1/host/desired").json()["usage_tenants"] == ["acme", "moved"]
    assert "moved" not in b.get("/internal/v1/host/desired").json()["usage_tenants"]
    # a tenant that only built on sa: its storage there (build cache) is reported, not its usage
    builder = TenantFactory(slug="builder")
    Build.objects.create(
        tenant=builder, host=Host.objects.get(name="sa"), name="x:1", reference="builder/x:1"
    )
    document = a.get("/internal/v1/host/desired").json()
    assert document["usage_tenants"] == ["acme", "moved"]
    assert document["storage_tenants"] == ["acme", "builder", "moved"]
    assert b.get("/internal/v1/host/desired").json()["storage_tenants"] == ["acme", "other"]


@pytest.mark.django_db
def test_a_host_records_only_its_own_tenants_and_apps(enrolled: Hosts, tenant: Tenant, make_app: Any) -> None:
    web, db, api = place(tenant, make_app)
    sa = Host.objects.get(name="sa")
    client = as_host(enrolled["sa"][1])
    body = {
        "tenants": [tenant_entry("acme", 10, 3600), tenant_entry("other", 99), tenant_entry("ghost", 1)],
        "containers": [
            container_entry("c-web", "acme", web.pk, 4),
            container_entry("c-db", "other", db.pk, 50),  # sb's app
            container_entry("c-api", "acme", api.pk, 50),  # acme's, but on sb
            container_entry("c-lie", "other", web.pk, 50),  # web is acme's, not other's
            container_entry("c-gone", "acme", 10**9, 50),  # no such app
        ],
    }
    answer = client.post("/internal/v1/host/usage", body, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "tenants": 1,
        "containers": 1,
        "ignored": {"tenants": ["other", "ghost"], "containers": ["c-db", "c-api", "c-lie", "c-gone"]},
    }
    (hour,) = UsageHour.objects.all()
    assert (hour.tenant, hour.host, hour.cpu_seconds, hour.memory_gb_hours) == (tenant, sa, 10, 1)
    (app_hour,) = AppUsageHour.objects.all()
    assert (app_hour.app, app_hour.host, app_hour.cpu_seconds) == (web, sa, 4)
    assert list(ContainerUsageCursor.objects.values_list("container_id", flat=True)) == ["c-web"]
    assert list(TenantStorage.objects.values_list("tenant__slug", "rootfs_bytes", "build_cache_bytes")) == [
        ("acme", 7, 3)
    ]

    # the next sample: what grew since (cursors per tenant, container)
    body = {
        "tenants": [tenant_entry("acme", 25, 3600)],
        "containers": [container_entry("c-web", "acme", web.pk, 9)],
    }
    assert client.post("/internal/v1/host/usage", body, format="json").status_code == 200
    assert UsageHour.objects.get().cpu_seconds == 25 and AppUsageHour.objects.get().cpu_seconds == 9

    # another app's container id on this host is not taken over (its cursor stays)
    body = {"tenants": [], "containers": [container_entry("c-web", "acme", api.pk, 90)]}
    Replica.objects.filter(app=api).update(host=sa)
    taken = client.post("/internal/v1/host/usage", body, format="json").json()
    assert taken["ignored"]["containers"] == ["c-web"] and AppUsageHour.objects.get().app == web
    assert ContainerUsageCursor.objects.get().app == web

    # the app moved away: its cursor still lets the host report it, up to its last sample
    Replica.objects.filter(app__in=[web, api]).update(host=Host.objects.get(name="sb"))
    body = {
        "tenants": [tenant_entry("acme", 26, 3600)],
        "containers": [container_entry("c-web", "acme", web.pk, 11)],
    }
    assert client.post("/internal/v1/host/usage", body, format="json").json()["ignored"] == {
        "tenants": [],
        "containers": [],
    }
    assert UsageHour.objects.get().cpu_seconds == 26 and AppUsageHour.objects.get().cpu_seconds == 11


@pytest.mark.django_db
def test_a_host_reports_the_storage_of_tenants_that_built_there_and_no_one_else(
    enrolled: Hosts, tenant: Tenant, make_app: Any
) -> None:
    """A tenant with no replicas on a host but a build there: that host writes its storage (its
    build cache counts against its storage quota), never its usage; another host cannot write
    that tenant's storage, nor can a host write storage of a tenant with nothing on it."""
    place(tenant, make_app)
    sa, sb = Host.objects.get(name="sa"), Host.objects.get(name="sb")
    builder, idle = TenantFactory(slug="builder"), TenantFactory(slug="idle")
    Build.objects.create(tenant=builder, host=sa, name="x:1", reference="builder/x:1", status="succeeded")
    a, b = as_host(enrolled["sa"][1]), as_host(enrolled["sb"][1])

    hostile = {"tenants": [storage_entry("builder", 10**12), storage_entry("idle", 10**12)], "containers": []}
    answer = b.post("/internal/v1/host/usage", hostile, format="json")
    assert answer.status_code == 200 and answer.json()["ignored"]["tenants"] == ["builder", "idle"]
    answer = a.post(
        "/internal/v1/host/usage", {**hostile, "tenants": [storage_entry("idle", 1)]}, format="json"
    )
    assert answer.json()["ignored"]["tenants"] == ["idle"]
    # counters for a tenant whose usage sa does not sample: the whole entry is ignored
    answer = a.post(
        "/internal/v1/host/usage", {"tenants": [tenant_entry("builder", 5)], "containers": []}, format="json"
    )
    assert answer.json()["ignored"]["tenants"] == ["builder"]
    assert nothing_written()

    body = {"tenants": [tenant_entry("acme", 1), storage_entry("builder", 4096)], "containers": []}
    answer = a.post("/internal/v1/host/usage", body, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"tenants": 1, "containers": 0, "ignored": {"tenants": [], "containers": []}}
    assert sorted(TenantStorage.objects.values_list("tenant__slug", "host__name", "build_cache_bytes")) == [
        ("acme", "sa", 3),
        ("builder", "sa", 4096),
    ]
    assert not UsageCursor.objects.filter(tenant=builder).exists()  # storage only: never billed usage here
    assert storage_use(builder).build_cache == 4096
    assert storage_use(idle).total == 0
    # the same tenant's storage on sb stays sb's to report: still refused there
    answer = b.post(
        "/internal/v1/host/usage", {"tenants": [storage_entry("builder", 1)], "containers": []}, format="json"
    )
    assert answer.json()["ignored"]["tenants"] == ["builder"]
    assert (
        TenantStorage.objects.get(tenant=builder).host == sa
        and not TenantStorage.objects.filter(host=sb).exists()
    )


@pytest.mark.django_db
def test_hostile_bodies_and_callers_are_refused_and_write_nothing(
    enrolled: Hosts, tenant: Tenant, make_app: Any
) -> None:
    web, _, _ = place(tenant, make_app)
    client = as_host(enrolled["sa"][1])
    good = {"tenants": [tenant_entry("acme", 1)], "containers": [container_entry("c1", "acme", web.pk, 1)]}

    def refused(body: Any, word: str) -> None:
        answer = client.post("/internal/v1/host/usage", body, format="json")
        assert answer.status_code == 400 and word in answer.content.decode(), (word, answer.content)

    for field in ("cpu_seconds", "memory_byte_seconds", "disk_bytes", "rootfs_bytes", "build_cache_bytes"):
        refused({**good, "tenants": [tenant_entry("acme", 1) | {field: -1}]}, field)
        refused({**good, "tenants": [tenant_entry("acme", 1) | {field: 10**30}]}, field)
        refused({**good, "tenants": [tenant_entry("acme", 1) | {field: "1e400"}]}, field)
    for value in ("nan", "NaN", "inf", "-inf", "Infinity", None, "x", [1]):
        refused(
            {**good, "containers": [container_entry("c1", "acme", web.pk, 1) | {"cpu_seconds": value}]}, "cpu"
        )
    refused({**good, "x": 1}, "unknown")  # unknown fields, at the top and in an entry
    refused({**good, "tenants": [tenant_entry("acme", 1, host="sb")]}, "host")
    refused({**good, "containers": [container_entry("c1", "acme", web.pk, 1, host="sb")]}, "host")
    refused({"tenants": [tenant_entry("acme", 1)]}, "containers")  # missing ones
    for field in ("cpu_seconds", "memory_byte_seconds", "disk_bytes"):  # counters: all or none
        partial = {key: value for key, value in tenant_entry("acme", 1).items() if key != field}
        refused({**good, "tenants": [partial]}, field)
    refused({**good, "tenants": [storage_entry("acme", 1) | {"cpu_seconds": 1}]}, "all of")
    refused({**good, "tenants": [{"tenant": "acme", "rootfs_bytes": 1}]}, "build_cache_bytes")
    refused({**good, "tenants": [tenant_entry("acme", 1)] * 2}, "at most once")
    refused({**good, "containers": [container_entry("c1", "acme", web.pk, 1)] * 2}, "at most once")
    refused({**good, "tenants": [tenant_entry(f"t{i}", 1) for i in range(1001)]}, "tenants")
    refused(
        {**good, "containers": [container_entry(f"c{i}", "acme", web.pk, 1) for i in range(5001)]},
        "containers",
    )
    refused({**good, "tenants": [tenant_entry("Acme; DROP", 1)]}, "tenant")
    refused({**good, "containers": [container_entry("../../etc", "acme", web.pk, 1)]}, "container")
    refused({**good, "containers": [container_entry("c1", "acme", 0, 1)]}, "app")
    refused({**good, "tenants": "acme"}, "tenants")
    refused([good], "")
    raw = json.dumps(good).replace('"cpu_seconds": 1,', '"cpu_seconds": NaN,', 1)
    assert "NaN" in raw
    answer = client.post("/internal/v1/host/usage", raw, content_type="application/json")
    assert answer.status_code == 400, answer.content  # strict JSON: no NaN nor Infinity
    assert nothing_written()

    # the door is for live hosts only: no token, a forged one, a tenant's API token, a session
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _, secret = create_token(Actor(user=owner), tenant, "automation")
    tenant_client = APIClient()
    tenant_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    session = APIClient()
    session.force_login(owner)
    for caller in (APIClient(), as_host("hphost_forged"), as_host(secret), tenant_client, session):
        assert caller.post("/internal/v1/host/usage", good, format="json").status_code in (401, 403)
    enrollment.revoke(None, "sa")  # revoked: refused at once
    assert client.post("/internal/v1/host/usage", good, format="json").status_code == 401
    assert nothing_written()


@pytest.mark.django_db
def test_the_agent_samples_and_reports_without_a_query(
    enrolled: Hosts, tenant: Tenant, make_app: Any, django_assert_num_queries: Any
) -> None:
    """The agent side on a fake engine: the document's tenants, every container with an app label
    (stopped ones too), no query; the panel writes what it sent (usage.services.record_sample)."""
    web, _, _ = place(tenant, make_app)
    engine = UsageEngine()
    for slug in ("acme", "ops"):
        engine.set_tenant_quota(slug, Resources())
    labels = {"org.hostpanel.app": str(web.pk), "org.hostpanel.tenant": "acme"}
    running = engine.run(
        ContainerSpec(image="busybox:latest", name="acme-web-0", tenant="acme", labels=labels)
    )
    stopped = engine.run(
        ContainerSpec(image="busybox:latest", name="acme-web-1", tenant="acme", labels=labels)
    )
    engine.stop(stopped.id)
    engine.run(ContainerSpec(image="busybox:latest", name="ops-tool", tenant="ops", labels={"x": "y"}))
    engine.tenant_counters = {"acme": Usage(30, 2 * GB * 3600, disk_bytes=GB), "other": Usage(99)}
    engine.container_counters = {running.id: Usage(20, GB * 3600), stopped.id: Usage(10, GB * 3600)}
    engine.set_tenant_storage("acme", 5 * GB)
    engine.build_cache.bytes["acme"] = 11
    engine.build_cache.bytes["builder"] = 5
    builder = TenantFactory(slug="builder")
    Build.objects.create(
        tenant=builder, host=Host.objects.get(name="sa"), name="x:1", reference="builder/x:1"
    )
    fake = FakeClient(["acme"], storage=("builder",))

    with django_assert_num_queries(0):
        agent_usage.report_usage(engine, fake)  # type: ignore[arg-type]
    (body,) = fake.sent
    assert engine.samples == 1
    assert [t["tenant"] for t in body["tenants"]] == ["acme", "builder"]  # only the document's
    # builder only builds here: its storage, no counters
    assert body["tenants"][1] == {"tenant": "builder", "rootfs_bytes": 0, "build_cache_bytes": 5}
    assert body["tenants"][0] == {
        "tenant": "acme",
        "cpu_seconds": 30.0,
        "memory_byte_seconds": 2.0 * GB * 3600,
        "disk_bytes": GB,
        "rootfs_bytes": 0,
        "build_cache_bytes": 11,
    }
    assert sorted(c["container"] for c in body["containers"]) == sorted([running.id, stopped.id])

    answer = as_host(enrolled["sa"][1]).post("/internal/v1/host/usage", body, format="json")
    assert answer.status_code == 200 and answer.json()["ignored"] == {"tenants": [], "containers": []}
    sa = Host.objects.get(name="sa")
    hours = UsageHour.objects.filter(host=sa, tenant=tenant)
    assert list(hours.values_list("cpu_seconds", "memory_gb_hours", "disk_gb_hours")) == [(30.0, 2.0, 0.0)]
    app_rows = AppUsageHour.objects.filter(app=web)
    assert list(app_rows.values_list("host__name", "cpu_seconds", "memory_gb_hours")) == [("sa", 30.0, 2.0)]
    assert storage_use(builder).build_cache == 5 and not UsageHour.objects.filter(tenant=builder).exists()


@pytest.mark.django_db
def test_the_loop_without_the_database_reports_usage_every_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_agent_loop`` reports usage once per ``usage_every`` (not with every reconcile),
    and a failed report does not end the loop."""
    import threading

    from hostpanel.agent import wakeup
    from hostpanel.agent.management.commands import hostagent

    reports: list[float] = []
    stop = threading.Event()

    def report(engine: Any, client: Any) -> None:
        reports.append(1.0)
        if len(reports) == 1:
            raise RuntimeError("the panel is away")
        if len(reports) == 3:
            stop.set()

    monkeypatch.setattr(hostagent, "report_usage", report)
    monkeypatch.setattr(hostagent.remote, "reconcile", lambda *a: SimpleNamespace(retry_in=None))
    clock = [0.0]  # the loop's own clock: each sleep moves it on to what the loop asked
    monkeypatch.setattr(hostagent, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    beats = []

    class Sleeps(wakeup.Wakeup):
        def sleep(self, deadline: float, stop: threading.Event) -> None:
            beats.append(deadline - clock[0])
            clock[0] = deadline

    hostagent._agent_loop(None, None, None, 1.0, stop, usage_every=3.0, soon=Sleeps())  # type: ignore[arg-type]
    assert len(reports) == 3 and len(beats) == 10  # after 3, 6 and 9 waits of 1 s, then it stopped
