"""``/api/v1/tenants/<t>/networks/`` and the apps' ``networks`` field."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Model

from hostpanel.deployments.models import App, Replica
from hostpanel.hosts.models import Host
from hostpanel.networks.models import Network
from hostpanel.networks.services import default_network
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.contract import TenantResourceContract
from tests.hostpanel.factories import MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db


class TestNetworks(TenantResourceContract):
    resource = "networks"
    can_update = False

    def make(self, tenant: Tenant) -> Model:
        return Network.objects.create(
            tenant=tenant, name=f"net-{tenant.slug}", subnet=f"10.140.{tenant.pk}.0/24", vni=tenant.pk
        )

    def key(self, obj: Model) -> str:
        return str(obj.name)  # type: ignore[attr-defined]

    def list_key_field(self) -> str:
        return "name"

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "back"}


@pytest.fixture
def dev(tenant: Tenant, host: Host) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


def test_create_list_inspect_delete(api: Any, tenant: Tenant, dev: Any) -> None:
    c = api(dev)
    base = f"/api/v1/tenants/{tenant.slug}/networks/"
    r = c.post(base, {"name": "back"}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["name"] == "back" and r.json()["subnet"].endswith("/24") and r.json()["vni"] > 0
    assert [n["name"] for n in c.get(base).json()["results"]] == ["back", "default"]
    assert c.post(base, {"name": "back"}, format="json").status_code == 409
    assert c.post(base, {"name": "Bad!"}, format="json").status_code == 400
    assert c.post(base, {"name": "back2", "subnet": "10.0.0.0/8"}, format="json").json()["error"]
    assert not Network.objects.filter(name="back2").exists()
    assert c.get(f"{base}nope/").status_code == 404
    assert c.delete(f"{base}back/").status_code == 204
    assert not Network.objects.filter(tenant=tenant, name="back").exists()


def test_the_limit_is_a_422_that_creates_nothing(api: Any, tenant: Tenant, dev: Any, settings: Any) -> None:
    settings.HOSTPANEL_NETWORKS_PER_TENANT = 1
    r = api(dev).post(f"/api/v1/tenants/{tenant.slug}/networks/", {"name": "back"}, format="json")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "quota_exceeded"
    assert not Network.objects.filter(name="back").exists()


def test_apps_join_the_default_network_unless_they_say_otherwise(api: Any, tenant: Tenant, dev: Any) -> None:
    c = api(dev)
    apps = f"/api/v1/tenants/{tenant.slug}/apps/"
    r = c.post(apps, {"name": "web", "image": "busybox:latest"}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["release"]["networks"] == [{"name": "default", "aliases": []}]
    assert r.json()["release"]["network"] == "none"  # no outbound traffic or ports: independent
    r = c.post(apps, {"name": "solo", "image": "busybox:latest", "networks": []}, format="json")
    assert r.json()["release"]["networks"] == []
    c.post(f"/api/v1/tenants/{tenant.slug}/networks/", {"name": "back"}, format="json")
    r = c.post(
        apps,
        {
            "name": "db",
            "image": "busybox:latest",
            "networks": ["default", {"name": "back", "aliases": ["database"]}],
        },
        format="json",
    )
    assert r.json()["release"]["networks"] == [
        {"name": "default", "aliases": []},
        {"name": "back", "aliases": ["database"]},
    ]
    r = c.patch(f"{apps}web/", {"networks": ["back"]}, format="json")
    assert r.status_code == 200, r.json()
    assert App.objects.get(name="web").current_release.networks == [{"name": "back", "aliases": []}]


def test_an_unknown_network_is_a_400_naming_it_and_creates_nothing(
    api: Any, tenant: Tenant, dev: Any
) -> None:
    other = TenantFactory(slug="other")
    default_network(other)
    Network.objects.create(tenant=other, name="theirs", subnet="10.141.0.0/24", vni=77)
    r = api(dev).post(
        f"/api/v1/tenants/{tenant.slug}/apps/",
        {"name": "web", "image": "busybox:latest", "networks": ["default", "theirs"]},
        format="json",
    )
    assert r.status_code == 400
    assert "theirs" in r.json()["error"]["message"]
    assert not App.objects.exists()
    assert not Network.objects.filter(tenant=tenant).exists()


def test_a_used_network_is_a_409_naming_the_apps(api: Any, tenant: Tenant, dev: Any) -> None:
    c = api(dev)
    c.post(f"/api/v1/tenants/{tenant.slug}/apps/", {"name": "web", "image": "busybox:latest"}, format="json")
    r = c.delete(f"/api/v1/tenants/{tenant.slug}/networks/default/")
    assert r.status_code == 409
    assert "web" in r.json()["error"]["message"]


def test_inspect_shows_members_and_addresses_per_host(api: Any, tenant: Tenant, dev: Any, host: Host) -> None:
    c = api(dev)
    c.post(
        f"/api/v1/tenants/{tenant.slug}/apps/",
        {"name": "db", "image": "busybox:latest", "networks": [{"name": "default", "aliases": ["pg"]}]},
        format="json",
    )
    replica = Replica.objects.get(app__name="db")
    Replica.objects.filter(pk=replica.pk).update(
        host=host, addresses={"host": host.pk, "networks": {"default": "10.128.0.9"}}
    )
    r = c.get(f"/api/v1/tenants/{tenant.slug}/networks/default/")
    assert r.status_code == 200
    body = r.json()
    assert body["members"] == [
        {
            "app": "db",
            "aliases": ["pg"],
            "replicas": [
                {
                    "container_name": replica.container_name,
                    "host": host.name,
                    "state": replica.state,
                    "address": "10.128.0.9",
                }
            ],
        }
    ]
    assert body["hosts"] == {host.name: ["10.128.0.9"]}
    app = c.get(f"/api/v1/tenants/{tenant.slug}/apps/db/").json()
    assert app["replicas"][0]["addresses"] == {"default": "10.128.0.9"}
    # an address reported by the host it left is not shown
    Replica.objects.filter(pk=replica.pk).update(
        host=Host.objects.create(name="h2", cpu_millis=1000, memory_bytes=2**30)
    )
    assert c.get(f"/api/v1/tenants/{tenant.slug}/networks/default/").json()["hosts"] == {}


def test_the_schema_documents_networks(api: Any, admin_user: Any) -> None:
    spec = api(admin_user).get("/api/schema/?format=json").json()
    schemas = spec["components"]["schemas"]
    joins = schemas["AppCreateRequest"]["properties"]["networks"]
    assert joins["type"] == "array" and len(joins["items"]["oneOf"]) == 2
    assert "bridge" in schemas["AppCreateRequest"]["properties"]["network"]["description"]
    assert "/api/v1/tenants/{tenant_slug}/networks/{name}/" in spec["paths"]
    assert "members" in schemas["NetworkDetail"]["properties"]
