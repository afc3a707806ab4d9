"""Apps, releases, quotas and the scheduler through the API."""

from __future__ import annotations

from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import App, Release, Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Quota, Role, Tenant
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db

WEB = {
    "name": "web",
    "image": "busybox:latest",
    "command": ["sh", "-c", "sleep 3600"],
    "restart_policy": "on-failure:3",
}


@pytest.fixture
def dev(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


def url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/apps/{suffix}"


def test_create_makes_release_one_places_replica_and_tells_the_host(
    api: Any, dev: Any, tenant: Tenant, host: Host, sent_reconciles: list[Any], on_commit: Any
) -> None:
    with on_commit():
        r = api(dev).post(url(tenant), WEB, format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["release"]["version"] == 1
    assert body["release"]["restart_policy"] == "on-failure:3"
    assert body["replicas"][0]["host"] == "h1"
    assert body["replicas"][0]["container_name"] == "acme-web-0"
    assert sent_reconciles == [(host.pk, "host.h1")]


def test_every_change_is_a_release_and_rollback_copies_an_old_one(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    c = api(dev)
    c.post(url(tenant), WEB, format="json")
    assert c.patch(url(tenant, "web/"), {"env": {"MODE": "two"}}, format="json").status_code == 200
    assert c.post(url(tenant, "web/scale/"), {"replicas": 2}, format="json").status_code == 200
    r = c.post(url(tenant, "web/rollback/"), {"version": 1}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["release"]["version"] == 4
    assert r.json()["release"]["env"] == {} and r.json()["release"]["replicas"] == 1
    releases = c.get(url(tenant, "web/releases/")).json()["results"]
    assert [x["version"] for x in releases] == [4, 3, 2, 1]
    assert releases[0]["note"] == "rollback to v1"
    assert c.post(url(tenant, "web/rollback/"), {"version": 42}, format="json").status_code == 404
    assert Replica.objects.filter(app__name="web").count() == 1


def test_scale_spreads_replicas_over_hosts(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    HostFactory(name="h2")
    api(dev).post(url(tenant), WEB | {"replicas": 2}, format="json")
    assert sorted(Replica.objects.values_list("host__name", flat=True)) == ["h1", "h2"]


def test_stop_start_restart(
    api: Any, dev: Any, tenant: Tenant, host: Host, sent_reconciles: list[Any], on_commit: Any
) -> None:
    c = api(dev)
    with on_commit():
        c.post(url(tenant), WEB, format="json")
        assert c.post(url(tenant, "web/stop/")).json()["state"] == "stopped"
        assert c.post(url(tenant, "web/restart/")).status_code == 409
        assert c.post(url(tenant, "web/start/")).json()["state"] == "running"
        assert c.post(url(tenant, "web/restart/")).status_code == 200
    assert App.objects.get(name="web").restart_generation == 1
    assert len(sent_reconciles) == 4


def test_over_quota_is_refused_with_what_and_how_much(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    Quota.objects.filter(tenant=tenant).update(containers=2, memory_bytes=300 * 1024**2)
    r = api(dev).post(url(tenant), WEB | {"replicas": 3, "memory_bytes": 128 * 1024**2}, format="json")
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded"
    over = {o["resource"]: o for o in err["details"]["over"]}
    assert over["containers"]["over_by"] == 1 and over["containers"]["limit"] == 2
    assert over["memory_bytes"]["over_by"] == 3 * 128 * 1024**2 - 300 * 1024**2
    assert "containers: 3 asked, 2 left" in err["message"]
    assert "memory: 384 MiB asked, 300 MiB left" in err["message"]
    assert not App.objects.exists()
    assert AuditLog.objects.filter(action="app.create", result="denied").exists()


def test_scale_over_quota_refused_but_scaling_down_always_allowed(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    c = api(dev)
    c.post(url(tenant), WEB | {"replicas": 2}, format="json")
    Quota.objects.filter(tenant=tenant).update(containers=1)  # admin lowered it below use
    assert c.post(url(tenant, "web/scale/"), {"replicas": 3}, format="json").status_code == 422
    assert c.post(url(tenant, "web/scale/"), {"replicas": 1}, format="json").status_code == 200


def test_starting_a_stopped_app_checks_the_quota(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    c = api(dev)
    c.post(url(tenant), WEB, format="json")
    c.post(url(tenant, "web/stop/"))
    c.post(url(tenant), WEB | {"name": "other"}, format="json")
    Quota.objects.filter(tenant=tenant).update(containers=1)
    r = c.post(url(tenant, "web/start/"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "quota_exceeded"


def test_nothing_fits_is_a_clear_409(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    Host.objects.filter(pk=host.pk).update(cpu_millis=500)
    r = api(dev).post(url(tenant), WEB | {"replicas": 3, "cpu_millis": 200}, format="json")
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "no_capacity"
    assert (
        "no host has room for replica 2 of web" in err["message"]
        and "h1 has 100 millicores" in err["message"]
    )
    assert not App.objects.exists() and not Release.objects.exists()


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"privileged": True}, "privileged"),
        ({"cap_add": ["SYS_ADMIN"]}, "cap_add"),
        ({"network_mode": "host"}, "network_mode"),
        ({"volumes": [{"name": "data", "path": "/data", "host_path": "/etc"}]}, "volumes"),
        ({"ports": [{"container_port": 80, "host_port": 22}]}, "ports"),
    ],
)
def test_privileged_engine_features_cannot_be_asked_for(
    api: Any, dev: Any, tenant: Tenant, host: Host, extra: dict[str, Any], field: str
) -> None:
    r = api(dev).post(url(tenant), WEB | extra, format="json")
    assert r.status_code == 400
    assert field in r.json()["error"]["details"]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"volumes": [{"name": "data", "path": "/proc"}]}, "/proc belongs to the runtime"),
        ({"volumes": [{"name": "../etc", "path": "/data"}]}, "invalid volume name"),
        ({"restart_policy": "sometimes"}, "invalid restart policy"),
        ({"secrets": [{"name": "missing"}]}, "has no secret(s) missing"),
        ({"health_check": {"command": ["true"], "http": {"port": 80}}}, "health_check"),
        ({"env": {"1BAD": "x"}}, "invalid variable"),
    ],
)
def test_invalid_specs_say_why(
    api: Any, dev: Any, tenant: Tenant, host: Host, extra: dict[str, Any], words: str
) -> None:
    r = api(dev).post(url(tenant), WEB | extra, format="json")
    assert r.status_code == 400, r.json()
    assert words in r.json()["error"]["message"]


def test_delete_app_removes_replicas_and_tells_hosts(
    api: Any, dev: Any, tenant: Tenant, host: Host, sent_reconciles: list[Any], on_commit: Any
) -> None:
    api(dev).post(url(tenant), WEB, format="json")
    with on_commit():
        assert api(dev).delete(url(tenant, "web/")).status_code == 204
    assert not Replica.objects.exists()
    assert sent_reconciles[-1] == (host.pk, "host.h1")


def test_containers_list_and_inspect(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    api(dev).post(url(tenant), WEB | {"replicas": 2}, format="json")
    body = api(dev).get(f"/api/v1/tenants/{tenant.slug}/containers/?app=web").json()
    assert body["count"] == 2
    one = api(dev).get(f"/api/v1/tenants/{tenant.slug}/containers/{body['results'][0]['id']}/").json()
    assert one["app"] == "web" and one["host"] == "h1" and one["release"] == 1


def test_container_logs_come_from_the_host_agent(
    api: Any, dev: Any, tenant: Tenant, host: Host, monkeypatch: Any
) -> None:
    api(dev).post(url(tenant), WEB, format="json")
    replica = Replica.objects.get()
    calls = []

    def fake_fetch(replica_id: int, queue: str, tail: int) -> list[dict[str, str]]:
        calls.append((replica_id, queue, tail))
        return [{"time": "t", "stream": "stdout", "text": "hello"}]

    monkeypatch.setattr("hostpanel.hosts.dispatch.fetch_logs", fake_fetch)
    r = api(dev).get(f"/api/v1/tenants/{tenant.slug}/containers/{replica.pk}/logs/?tail=5")
    assert r.json() == [{"time": "t", "stream": "stdout", "text": "hello"}]
    assert calls == [(replica.pk, "host.h1", 5)]


def test_published_ports_get_distinct_host_ports_that_survive_redeploys(
    api: Any, dev: Any, tenant: Tenant, host: Host, settings: Any
) -> None:
    settings.HOSTPANEL_PORT_RANGE = "31000-31010"
    Host.objects.filter(pk=host.pk).update(address="10.0.0.5")
    c = api(dev)
    c.post(url(tenant), WEB | {"replicas": 2, "ports": [{"container_port": 80}]}, format="json")
    listed = c.get(f"/api/v1/tenants/{tenant.slug}/containers/").json()["results"]
    published = sorted(p["host_port"] for item in listed for p in item["ports"])
    assert published == [31000, 31001]
    assert listed[0]["ports"][0]["address"] == f"10.0.0.5:{listed[0]['ports'][0]['host_port']}"
    c.patch(url(tenant, "web/"), {"env": {"X": "1"}}, format="json")
    again = sorted(p["host_port"] for r in Replica.objects.all() for p in r.ports)
    assert again == published
    c.patch(
        url(tenant, "web/"),
        {"ports": [{"container_port": 80}, {"container_port": 53, "protocol": "udp"}]},
        format="json",
    )
    ports = Replica.objects.get(index=0).ports
    assert {(p["protocol"], p["container_port"]) for p in ports} == {("tcp", 80), ("udp", 53)}


def test_host_ports_run_out_cleanly(api: Any, dev: Any, tenant: Tenant, host: Host, settings: Any) -> None:
    settings.HOSTPANEL_PORT_RANGE = "31000-31000"
    r = api(dev).post(url(tenant), WEB | {"replicas": 2, "ports": [{"container_port": 80}]}, format="json")
    assert r.status_code == 409 and "no free port" in r.json()["error"]["message"]


def test_container_stats_come_from_the_host_agent(
    api: Any, dev: Any, tenant: Tenant, host: Host, monkeypatch: Any
) -> None:
    api(dev).post(url(tenant), WEB, format="json")
    replica = Replica.objects.get()
    monkeypatch.setattr("hostpanel.hosts.dispatch.fetch_stats", lambda rid, queue: {"memory_bytes": 1234})
    r = api(dev).get(f"/api/v1/tenants/{tenant.slug}/containers/{replica.pk}/stats/")
    assert r.json() == {"memory_bytes": 1234}


def test_a_bigger_release_moves_replicas_that_no_longer_fit(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    Host.objects.filter(pk=host.pk).update(cpu_millis=1000)
    HostFactory(name="h2", cpu_millis=1000)
    c = api(dev)
    c.post(url(tenant), WEB | {"replicas": 2, "cpu_millis": 300}, format="json")
    c.post(url(tenant), WEB | {"name": "other", "cpu_millis": 600}, format="json")  # h1 or h2 now tight
    r = c.patch(url(tenant, "web/"), {"cpu_millis": 700, "replicas": 1}, format="json")
    assert r.status_code == 200, r.json()
    (replica,) = Replica.objects.filter(app__name="web")
    other = Replica.objects.get(app__name="other")
    assert replica.host_id != other.host_id  # 700 + 600 would not fit on one host
    r = c.patch(url(tenant, "web/"), {"cpu_millis": 900, "replicas": 2}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_capacity"
    assert Replica.objects.get(app__name="web").release.cpu_millis == 700  # rolled back


APP_ACTIONS = [
    ("post", "web/deploy/", {"env": {"A": "1"}}),
    ("post", "web/stop/", None),
    ("post", "web/start/", None),
    ("post", "web/restart/", None),
    ("post", "web/scale/", {"replicas": 2}),
    ("post", "web/rollback/", {"version": 1}),
]


@pytest.mark.parametrize("method, path, body", APP_ACTIONS)
def test_app_actions_viewer_403_outsider_404(
    api: Any, dev: Any, tenant: Tenant, host: Host, method: str, path: str, body: Any
) -> None:
    api(dev).post(url(tenant), WEB, format="json")
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    outsider = MembershipFactory(role=Role.OWNER).user
    r = getattr(api(viewer), method)(url(tenant, path), body, format="json")
    assert r.status_code == 403, r.json()
    r = getattr(api(outsider), method)(url(tenant, path), body, format="json")
    assert r.status_code == 404, r.json()
    assert getattr(api(dev), method)(url(tenant, path), body, format="json").status_code == 200


def test_deleting_a_tenant_deletes_its_apps_and_tells_the_hosts(
    api: Any,
    admin_user: Any,
    dev: Any,
    tenant: Tenant,
    host: Host,
    sent_reconciles: list[Any],
    on_commit: Any,
) -> None:
    api(dev).post(url(tenant), WEB, format="json")
    with on_commit():
        assert api(admin_user).delete(f"/api/v1/tenants/{tenant.slug}/").status_code == 204
    assert not App.objects.exists() and not Replica.objects.exists()
    assert (host.pk, "host.h1") in sent_reconciles


def test_network_is_none_or_the_tenants_bridge(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    c = api(dev)
    r = c.post(url(tenant), WEB | {"network": "host"}, format="json")
    assert r.status_code == 400 and "not for tenants" in r.json()["error"]["message"]
    assert c.post(url(tenant), WEB, format="json").json()["release"]["network"] == "none"
    r = c.patch(url(tenant, "web/"), {"ports": [{"container_port": 80}]}, format="json")
    assert r.json()["release"]["network"] == "bridge"  # published ports need it


def test_http_port_is_published_on_the_tenant_network_and_kept_by_later_releases(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    r = api(dev).post(
        url(tenant), {**WEB, "http_port": 8080, "ports": [{"container_port": 53}]}, format="json"
    )
    assert r.status_code == 201, r.json()
    release = r.json()["release"]
    assert release["http_port"] == 8080 and release["network"] == "bridge"
    assert {"container_port": 8080, "protocol": "tcp"} in release["ports"]
    replica = Replica.objects.get(app__name="web")
    assert [p["container_port"] for p in replica.ports] == [53, 8080]
    assert (
        api(dev).patch(url(tenant, "web/"), {"replicas": 2}, format="json").json()["release"]["http_port"]
        == 8080
    )


@pytest.mark.parametrize("bad", [0, 65536, "eighty", True])
def test_a_bad_http_port_is_a_400_that_changes_nothing(
    api: Any, dev: Any, tenant: Tenant, host: Host, bad: object
) -> None:
    r = api(dev).post(url(tenant), {**WEB, "http_port": bad}, format="json")
    assert r.status_code == 400 and "http_port" in str(r.json())
    assert not App.objects.exists()


def test_an_app_whose_hostname_another_tenant_answers_at_is_a_409_that_names_nobody(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    other = MembershipFactory(tenant__slug="co", role=Role.DEVELOPER)
    first = api(other.user).post(
        "/api/v1/tenants/co/apps/", {**WEB, "name": "web-acme", "http_port": 80}, format="json"
    )
    assert first.status_code == 201, first.json()  # web-acme-co.localhost
    mine = TenantFactory(slug="acme-co")
    MembershipFactory(tenant=mine, user=dev, role=Role.DEVELOPER)
    r = api(dev).post("/api/v1/tenants/acme-co/apps/", {**WEB, "name": "web", "http_port": 80}, format="json")
    assert r.status_code == 409, r.json()
    message = r.json()["error"]["message"]
    assert (
        "web-acme-co.localhost" in message and "choose another app name" in message and "'co'" not in message
    )
    assert not App.objects.filter(tenant=mine).exists()
