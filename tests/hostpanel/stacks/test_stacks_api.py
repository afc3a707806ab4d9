"""Stacks through the API: a compose file becomes apps, networks and volumes through their services;
bad files, collisions and quota are refused with the key/line named and nothing made; redeploy in
place, down, depends_on conditions, cross-tenant and role rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Model

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Release, Replica
from hostpanel.hosts.models import Host
from hostpanel.networks.models import Network
from hostpanel.secrets import services as secrets
from hostpanel.stacks import services as stacks
from hostpanel.stacks.models import Stack, StackService
from hostpanel.stacks.sources import pasted
from hostpanel.tenants.models import Quota, Role, Tenant
from hostpanel.volumes.models import Volume
from tests.hostpanel.contract import TenantResourceContract
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db

THREE = """\
services:
  web:
    image: busybox:latest
    command: ["httpd", "-f", "-p", "8080"]
    ports: ["8080:8080"]
    depends_on:
      kv: {condition: service_healthy}
  kv:
    image: busybox:latest
    command: ["sh", "-c", "sleep 3600"]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
    volumes:
      - data:/data
      - {type: tmpfs, target: /scratch, tmpfs: {size: 1048576}}
    user: "1000"
    working_dir: /data
    stop_signal: SIGINT
    stop_grace_period: 2s
    init: true
    labels: {com.example.tier: kv}
  worker:
    image: busybox:latest
    command: ["sh", "-c", "sleep 3600"]
    deploy: {replicas: 2}
volumes:
  data: {}
"""


@pytest.fixture
def dev(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


def url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/stacks/{suffix}"


def nothing_made(tenant: Tenant) -> None:
    assert not Stack.objects.filter(tenant=tenant).exists()
    assert not App.objects.filter(tenant=tenant).exists()
    assert not Volume.objects.filter(tenant=tenant).exists()
    assert not Network.objects.filter(tenant=tenant).exclude(name="default").exists()


def post(api: Any, user: Any, tenant: Tenant, compose: str, name: str = "shop", **extra: Any) -> Any:
    return api(user).post(url(tenant), {"name": name, "compose": compose, **extra}, format="json")


def test_a_stack_is_apps_networks_and_volumes_made_through_their_services(
    api: Any, dev: Any, tenant: Tenant, host: Host, sent_advances: list[int], on_commit: Any
) -> None:
    with on_commit():
        r = post(api, dev, tenant, THREE)
    assert r.status_code == 201, r.json()
    body = r.json()
    assert {s["name"]: s["state"] for s in body["services"]} == {
        "kv": "started",
        "web": "waiting",
        "worker": "started",
    }
    assert sent_advances == [Stack.objects.get().pk]
    apps = {a.name: a for a in App.objects.filter(tenant=tenant)}
    assert set(apps) == {"web", "kv", "worker"}  # the service's name is the app's
    assert apps["web"].state == App.State.STOPPED  # waits for kv to be healthy
    web, kv = apps["web"].current_release, apps["kv"].current_release
    assert web is not None and kv is not None
    assert web.http_port == 8080 and web.ports == [{"container_port": 8080, "protocol": "tcp"}]
    assert web.networks == [{"name": "shop_default", "aliases": []}]
    assert web.network == "bridge"  # outbound, as compose gives it
    assert kv.volumes == [{"name": "shop_data", "path": "/data"}]
    assert (kv.user, kv.working_dir, kv.stop_signal, kv.stop_grace_seconds, kv.init) == (
        "1000",
        "/data",
        "SIGINT",
        2,
        True,
    )
    assert kv.labels == {"com.example.tier": "kv"} and kv.tmpfs == [
        {"path": "/scratch", "size_bytes": 1024**2}
    ]
    assert kv.health_check == {"command": ["true"], "interval": 1.0}
    assert apps["worker"].current_release.replicas == 2  # type: ignore[union-attr]
    assert Network.objects.filter(tenant=tenant, name="shop_default").exists()
    assert Volume.objects.filter(tenant=tenant, name="shop_data").exists()
    assert AuditLog.objects.filter(action="stack.create", result="ok").count() == 1


def test_service_healthy_starts_the_dependent_only_when_its_dependency_is_healthy(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    assert post(api, dev, tenant, THREE).status_code == 201
    stack = Stack.objects.get()
    assert stacks.advance(stack.pk) is True  # kv not healthy yet: web still waits
    assert App.objects.get(name="web").state == App.State.STOPPED
    assert "kv service_healthy" in StackService.objects.get(name="web").message
    Replica.objects.filter(app__name="kv").update(state=Replica.State.RUNNING, health="starting")
    assert stacks.advance(stack.pk) is True
    Replica.objects.filter(app__name="kv").update(health="healthy")
    assert stacks.advance(stack.pk) is False
    assert App.objects.get(name="web").state == App.State.RUNNING
    stack.refresh_from_db()
    assert stack.status == Stack.Status.RUNNING


def test_completed_successfully_and_a_failed_dependency(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    compose = """\
services:
  migrate:
    image: busybox:latest
    command: ["true"]
  app:
    image: busybox:latest
    depends_on:
      migrate: {condition: service_completed_successfully}
"""
    assert post(api, dev, tenant, compose).status_code == 201
    stack = Stack.objects.get()
    Replica.objects.filter(app__name="migrate").update(state=Replica.State.EXITED, exit_code=3)
    assert stacks.advance(stack.pk) is False
    stack.refresh_from_db()
    assert stack.status == Stack.Status.FAILED and "migrate did not meet" in stack.message
    assert App.objects.get(name="app").state == App.State.STOPPED
    # a redeploy (migrate fixed) gives the failed service another chance
    assert (
        api(dev)
        .put(
            url(tenant, "shop/"),
            {"compose": compose.replace('["true"]', '["sh", "-c", "exit 0"]')},
            format="json",
        )
        .status_code
        == 200
    )
    assert StackService.objects.get(name="app").state == "waiting"
    Replica.objects.filter(app__name="migrate").update(state=Replica.State.EXITED, exit_code=0)
    assert stacks.advance(stack.pk) is False
    assert App.objects.get(name="app").state == App.State.RUNNING


@pytest.mark.parametrize(
    ("compose", "named"),
    [
        ("services:\n  web:\n    image: [unclosed\n", "line"),
        ("services:\n  web:\n    image: busybox:latest\n    privileged: true\n", "privileged"),
        (
            "services:\n  a:\n    image: busybox:latest\n    depends_on: [b]\n"
            "  b:\n    image: busybox:latest\n    depends_on: [a]\n",
            "cycle",
        ),
        ("services:\n  web:\n    image: busybox:latest\n    networks: [nowhere]\n", "nowhere"),
        ("services:\n  web:\n    image: busybox:latest\n    volumes: [gone:/data]\n", "gone"),
        ("services:\n  web:\n    image: busybox:latest\n    secrets: [db]\n", "db"),
        (
            "services:\n  web:\n    image: busybox:latest\n    secrets: [db]\n"
            "secrets:\n  db: {external: true}\n",
            "db",
        ),
        ("services:\n  web:\n    image: busybox:latest\n    env_file: [.env.web]\n", "env_file"),
        ("services:\n  web:\n    build: .\n", "build"),
        ("services:\n  Web_1:\n    image: busybox:latest\n", "Web_1"),
        (
            "services:\n  web:\n    image: busybox:latest\n    depends_on:\n"
            "      db: {condition: service_healthy}\n  db:\n    image: busybox:latest\n",
            "healthcheck",
        ),
    ],
)
def test_a_refused_file_is_a_400_naming_the_key_and_makes_nothing(
    api: Any, dev: Any, tenant: Tenant, host: Host, compose: str, named: str
) -> None:
    r = post(api, dev, tenant, compose)
    assert r.status_code == 400, r.json()
    assert named in r.json()["error"]["message"]
    nothing_made(tenant)


def test_every_problem_has_its_line(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    r = post(api, dev, tenant, "services:\n  web:\n    image: busybox:latest\n    cap_add: [ALL]\n")
    problems = r.json()["error"]["details"]["problems"]
    assert problems[0]["line"] == 4 and "cap_add" in problems[0]["where"]


def test_a_service_named_as_an_app_outside_the_stack_is_a_409_naming_both(
    api: Any, dev: Any, tenant: Tenant, host: Host, make_app: Any
) -> None:
    make_app(tenant, "kv")
    r = post(api, dev, tenant, THREE)
    assert r.status_code == 409, r.json()
    assert "service 'kv' would be app 'kv'" in r.json()["error"]["message"]
    assert set(App.objects.values_list("name", flat=True)) == {"kv"}
    assert not Stack.objects.exists() and not Volume.objects.exists()


def test_the_whole_stack_is_checked_against_the_quota_first(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    Quota.objects.filter(tenant=tenant).update(containers=3)  # the file asks for 4 (worker has 2)
    r = post(api, dev, tenant, THREE)
    assert r.status_code == 422, r.json()
    assert r.json()["error"]["details"]["over"][0]["resource"] == "containers"
    nothing_made(tenant)


def test_redeploy_rolls_only_the_changed_service_and_removes_a_dropped_one(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    assert post(api, dev, tenant, THREE).status_code == 201
    versions = {a.name: a.current_release.version for a in App.objects.select_related("current_release")}  # type: ignore[union-attr]
    changed = THREE.replace(
        'command: ["sh", "-c", "sleep 3600"]\n    deploy', 'command: ["sh", "-c", "sleep 7200"]\n    deploy'
    )
    changed = changed.replace("  web:\n", "  api:\n", 1)  # web leaves, api comes
    r = api(dev).put(url(tenant, "shop/"), {"compose": changed}, format="json")
    assert r.status_code == 200, r.json()
    after = {a.name: a.current_release.version for a in App.objects.select_related("current_release")}  # type: ignore[union-attr]
    assert after["kv"] == versions["kv"]  # unchanged: no new release, its containers stay
    assert after["worker"] == versions["worker"] + 1
    assert "web" not in after and after["api"] == 1
    assert AuditLog.objects.filter(action="stack.redeploy", result="ok").exists()


def test_redeploy_with_a_changed_env_changes_what_it_interpolates(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    compose = "services:\n  web:\n    image: busybox:latest\n    environment:\n      MODE: ${MODE:-one}\n"
    assert post(api, dev, tenant, compose).status_code == 201
    assert Release.objects.get().env == {"MODE": "one"}
    r = api(dev).patch(url(tenant, "shop/"), {"env": {"MODE": "two"}}, format="json")
    assert r.status_code == 200, r.json()
    assert App.objects.get().current_release.env == {"MODE": "two"}  # type: ignore[union-attr]


def test_a_refused_redeploy_changes_nothing(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    assert post(api, dev, tenant, THREE).status_code == 201
    before = list(Release.objects.values_list("pk", flat=True))
    r = api(dev).put(url(tenant, "shop/"), {"compose": THREE + "x: [\n"}, format="json")
    assert r.status_code == 400
    assert list(Release.objects.values_list("pk", flat=True)) == before
    assert Stack.objects.get().source == THREE


def test_down_removes_apps_and_networks_and_keeps_volumes_unless_asked(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    assert post(api, dev, tenant, THREE).status_code == 201
    assert api(dev).delete(url(tenant, "shop/")).status_code == 204
    assert not App.objects.exists() and not Stack.objects.exists()
    assert not Network.objects.filter(name="shop_default").exists()
    assert Volume.objects.filter(name="shop_data").exists()  # kept: a new "shop" finds its data
    assert post(api, dev, tenant, THREE).status_code == 201
    assert api(dev).delete(url(tenant, "shop/") + "?volumes=true").status_code == 204
    assert not Volume.objects.exists()


def test_external_network_is_the_tenants_own(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    compose = (
        "services:\n  web:\n    image: busybox:latest\n    networks: [default]\n"
        "networks:\n  default: {external: true}\n"
    )
    assert post(api, dev, tenant, compose).status_code == 201
    assert Release.objects.get().networks == [{"name": "default", "aliases": []}]
    assert api(dev).delete(url(tenant, "shop/")).status_code == 204
    assert Network.objects.filter(tenant=tenant, name="default").exists()  # not the stack's to remove


def test_tenant_secret_is_mounted(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    secrets.create_secret(Actor(user=dev), tenant, "db", "hunter2")
    compose = (
        "services:\n  web:\n    image: busybox:latest\n    secrets: [db]\nsecrets:\n  db: {external: true}\n"
    )
    assert post(api, dev, tenant, compose).status_code == 201
    assert Release.objects.get().secrets == [{"name": "db", "env": None}]


def test_viewer_reads_but_cannot_deploy(api: Any, tenant: Tenant, host: Host, dev: Any) -> None:
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    assert post(api, dev, tenant, THREE).status_code == 201
    r = api(viewer).get(url(tenant, "shop/"))
    assert r.status_code == 200 and len(r.json()["services"]) == 3
    assert post(api, viewer, tenant, THREE, name="other").status_code == 403


class TestStacksContract(TenantResourceContract):
    resource = "stacks"
    update_method = "put"

    def make(self, tenant: Tenant) -> Model:
        admin = Actor(user=MembershipFactory(tenant=tenant, role=Role.OWNER).user)
        compose = f"services:\n  svc-{tenant.slug}:\n    image: busybox:latest\n"
        return stacks.create_stack(admin, tenant, f"st-{tenant.slug}", pasted(compose))

    def key(self, obj: Model) -> str:
        return str(obj.name)  # type: ignore[attr-defined]

    def list_key_field(self) -> str:
        return "name"

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "new", "compose": "services:\n  one:\n    image: busybox:latest\n"}

    def update_payload(self, obj: Model) -> dict[str, Any]:
        return {"env": {"X": "1"}}


def test_deployments_never_import_stacks() -> None:
    """The layering: stacks builds on deployments, networks, volumes, secrets, builds; never the reverse."""
    import ast
    from pathlib import Path

    root = Path(deployments.__file__).resolve().parent.parent
    for app in ("deployments", "networks", "volumes", "secrets", "builds", "tenants"):
        for path in (root / app).rglob("*.py"):
            tree = ast.parse(path.read_text())
            mods = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
            mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            assert not [m for m in mods if m.startswith("hostpanel.stacks")], path


def test_a_service_only_on_internal_networks_has_no_outbound(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    compose = (
        "services:\n  db:\n    image: busybox:latest\n    networks: [back]\n"
        "networks:\n  back: {internal: true}\n"
    )
    assert post(api, dev, tenant, compose).status_code == 201
    release = Release.objects.get()
    assert release.network == "none" and release.networks == [{"name": "shop_back", "aliases": []}]


def test_another_tenants_network_volume_or_secret_cannot_be_named_external(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    from hostpanel.networks.services import create_network
    from hostpanel.volumes.services import create_volume
    from tests.hostpanel.factories import TenantFactory

    other = TenantFactory(slug="other")
    owner = Actor(user=MembershipFactory(tenant=other, role=Role.OWNER).user)
    create_network(owner, other, "private")
    create_volume(owner, other, "vault", 8 * 1024**2)
    secrets.create_secret(owner, other, "key", "s3cret")
    for compose, named in (
        (
            "services:\n  web:\n    image: busybox:latest\n    networks: [private]\n"
            "networks:\n  private: {external: true}\n",
            "private",
        ),
        (
            "services:\n  web:\n    image: busybox:latest\n    volumes: [vault:/v]\n"
            "volumes:\n  vault: {external: true}\n",
            "vault",
        ),
        (
            "services:\n  web:\n    image: busybox:latest\n    secrets: [key]\n"
            "secrets:\n  key: {external: true}\n",
            "key",
        ),
    ):
        r = post(api, dev, tenant, compose)
        assert r.status_code == 400, r.json()
        assert named in r.json()["error"]["message"] and "other" not in r.json()["error"]["message"]
        nothing_made(tenant)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"name": "shop", "compose": ["services"]}, "compose"),
        ({"name": "shop", "compose": THREE, "env": {"A": 1}}, "env"),
        ({"name": "shop", "compose": THREE, "env": ["A=1"]}, "env"),
        ({"name": "../etc", "compose": THREE}, "name"),
        ({"name": "shop", "compose": THREE, "privileged": True}, "privileged"),
        ({"name": "shop", "compose": "x: " + "y" * 300_000}, "compose"),
        ({"name": "shop"}, "source"),
        ({"name": "shop", "compose": "a: &a [*a, *a]\nservices: {}\n"}, "compose"),
    ],
)
def test_a_hostile_body_is_a_400_naming_the_field_and_makes_nothing(
    api: Any, dev: Any, tenant: Tenant, host: Host, body: dict[str, Any], named: str
) -> None:
    r = api(dev).post(url(tenant), body, format="json")
    assert r.status_code == 400, r.json()
    assert named in str(r.json()["error"]), r.json()
    nothing_made(tenant)


def test_a_redeploy_makes_anew_an_app_deleted_by_hand(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    assert post(api, dev, tenant, THREE).status_code == 201
    assert api(dev).delete(f"/api/v1/tenants/{tenant.slug}/apps/worker/").status_code == 204
    assert api(dev).put(url(tenant, "shop/"), {}, format="json").status_code == 200
    assert App.objects.filter(name="worker").exists()
    assert StackService.objects.get(name="worker").app is not None


def test_the_periodic_host_checks_start_a_waiting_service_once_its_dependency_is_met(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    """`manage.py watchhosts` on the panel (hosts.watch_hosts) advances stacks (agents without the
    database cannot run the advance task)."""
    from hostpanel.hosts import services as hosts

    assert post(api, dev, tenant, THREE).status_code == 201
    hosts.watch_hosts()
    assert App.objects.get(name="web").state == App.State.STOPPED  # kv not healthy yet: web waits
    Replica.objects.filter(app__name="kv").update(state=Replica.State.RUNNING, health="healthy")
    hosts.watch_hosts()
    assert App.objects.get(name="web").state == App.State.RUNNING
    assert Stack.objects.get().status == Stack.Status.RUNNING
