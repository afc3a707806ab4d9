"""Tenant networks: names, the panel-wide pool, the default network, the limit, apps joining them."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App
from hostpanel.errors import Conflict, Forbidden, InvalidRequest, NotFound, QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.networks import services
from hostpanel.networks.models import Network, NetworkSlot
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def dev(tenant: Tenant) -> Actor:
    return Actor(user=MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user)


def test_subnets_and_vnis_are_unique_across_tenants(tenant: Tenant, dev: Actor) -> None:
    other = TenantFactory(slug="other")
    a = services.create_network(dev, tenant, "back")
    b = services.default_network(other)
    c = services.default_network(tenant)
    subnets = [ipaddress.IPv4Network(n.subnet) for n in (a, b, c)]
    assert len({n.vni for n in (a, b, c)}) == 3
    assert all(s.prefixlen == 24 and s.subnet_of(ipaddress.IPv4Network("10.128.0.0/12")) for s in subnets)
    assert not any(x.overlaps(y) for i, x in enumerate(subnets) for y in subnets[i + 1 :])
    assert services.default_network(tenant) == c  # made once
    assert c.is_default and not a.is_default
    assert AuditLog.objects.filter(action="network.create", tenant=tenant, object_id=str(a.pk)).exists()


def test_a_deleted_networks_subnet_and_vni_are_reused(tenant: Tenant, dev: Actor) -> None:
    a = services.create_network(dev, tenant, "one")
    subnet, vni = a.subnet, a.vni
    services.delete_network(dev, a)
    b = services.create_network(dev, tenant, "two")
    assert (b.subnet, b.vni) == (subnet, vni)


@pytest.mark.parametrize("name", ["Bad", "-x", "a.b", "none", "host", "bridge", "x" * 64, ""])
def test_bad_names_are_refused_and_create_nothing(tenant: Tenant, dev: Actor, name: str) -> None:
    with pytest.raises(InvalidRequest, match="name"):
        services.create_network(dev, tenant, name)
    assert not Network.objects.exists()


def test_a_name_is_unique_per_tenant_only(tenant: Tenant, dev: Actor) -> None:
    services.create_network(dev, tenant, "back")
    with pytest.raises(Conflict, match="exists already"):
        services.create_network(dev, tenant, "back")
    services.default_network(TenantFactory(slug="other"))
    services.create_network(
        Actor(user=MembershipFactory(tenant=Tenant.objects.get(slug="other"), role=Role.OWNER).user),
        Tenant.objects.get(slug="other"),
        "back",
    )
    assert Network.objects.filter(name="back").count() == 2


def test_the_limit_refuses_and_creates_nothing(tenant: Tenant, dev: Actor, settings: Any) -> None:
    settings.HOSTPANEL_NETWORKS_PER_TENANT = 3  # the default network counts, made or not
    services.create_network(dev, tenant, "one")
    services.create_network(dev, tenant, "two")
    with pytest.raises(QuotaExceeded, match="networks: 1 asked, 0 left") as over:
        services.create_network(dev, tenant, "three")
    assert over.value.details["over"][0]["resource"] == "networks"
    assert sorted(Network.objects.values_list("name", flat=True)) == ["one", "two"]
    services.create_network(dev, tenant, "default")  # the one counted already


def test_roles_and_other_tenants(tenant: Tenant, dev: Actor) -> None:
    viewer = Actor(user=MembershipFactory(tenant=tenant, role=Role.VIEWER).user)
    with pytest.raises(Forbidden):
        services.create_network(viewer, tenant, "back")
    network = services.create_network(dev, tenant, "back")
    with pytest.raises(Forbidden):
        services.delete_network(viewer, network)
    assert services.get_network(viewer, tenant, "back") == network
    assert [n.name for n in services.visible_networks(viewer, tenant)] == ["back", "default"]
    other = TenantFactory(slug="other")
    with pytest.raises(NotFound):
        services.get_network(dev, other, "back")
    outsider = Actor(user=MembershipFactory(tenant=other, role=Role.OWNER).user)
    with pytest.raises(NotFound, match="no network 'back'"):
        services.get_network(outsider, other, "back")
    with pytest.raises(NotFound):
        services.delete_network(outsider, network)


def test_apps_join_the_networks_they_name(tenant: Tenant, make_app: Any, dev: Actor) -> None:
    services.create_network(dev, tenant, "back")
    app = make_app(tenant, networks=["default", {"name": "back", "aliases": ["database", "db.local"]}])
    release = app.current_release
    assert release.networks == [
        {"name": "default", "aliases": []},
        {"name": "back", "aliases": ["database", "db.local"]},
    ]
    assert release.container_shape()["networks"] == release.networks
    assert Network.objects.filter(tenant=tenant, name="default", is_default=True).exists()
    # not naming networks (the Docker API's containers) joins none, and keeps the old shape
    bare = make_app(tenant, "bare")
    assert bare.current_release.networks == [] and "networks" not in bare.current_release.container_shape()


@pytest.mark.parametrize(
    ("networks", "error"),
    [
        (["nope"], "has no network\\(s\\) nope"),
        (["default", "nope"], "has no network\\(s\\) nope"),
        ([{"name": "default", "alias": ["x"]}], "unknown key\\(s\\) alias"),
        ([{"name": "default", "aliases": ["bad_alias!"]}], "invalid network alias"),
        (["default", "default"], "given twice"),
        ("default", "give a list"),
        ([3], "give a list"),
        (["Bad"], "invalid network name"),
    ],
)
def test_bad_networks_on_an_app_create_nothing(
    tenant: Tenant, make_app: Any, networks: Any, error: str
) -> None:
    with pytest.raises(InvalidRequest, match=error):
        make_app(tenant, networks=networks)
    assert not App.objects.exists()
    assert not Network.objects.exists()  # not even the default network


def test_another_tenants_network_is_unknown_to_an_app(tenant: Tenant, make_app: Any) -> None:
    other = TenantFactory(slug="other")
    Network.objects.create(tenant=other, name="theirs", subnet="10.143.0.0/24", vni=5)
    with pytest.raises(InvalidRequest, match="has no network\\(s\\) theirs"):
        make_app(tenant, networks=["theirs"])


def test_a_used_network_is_not_deleted(tenant: Tenant, make_app: Any, dev: Actor, admin_actor: Actor) -> None:
    back = services.create_network(dev, tenant, "back")
    app = make_app(tenant, networks=["back"])
    make_app(tenant, "db", networks=[{"name": "back", "aliases": ["database"]}])
    with pytest.raises(Conflict, match="used by app\\(s\\) db, web; deploy them without it") as refused:
        services.delete_network(dev, back)
    assert refused.value.details == {"apps": ["db", "web"]}
    deployments.deploy(admin_actor, app, networks=[])
    deployments.delete_app(admin_actor, App.objects.get(name="db"))
    services.delete_network(dev, back)
    assert not Network.objects.filter(name="back").exists()


def test_each_host_gets_its_own_slice(tenant: Tenant, host: Host, settings: Any) -> None:
    settings.HOSTPANEL_NETWORK_HOST_PREFIX = 26
    network = services.default_network(tenant)
    second = Host.objects.create(name="h2", cpu_millis=1000, memory_bytes=1024**3)
    a = services.host_range(network, host.pk)
    b = services.host_range(network, second.pk)
    assert services.host_range(network, host.pk) == a
    assert a != b and ipaddress.IPv4Network(a).prefixlen == 26
    assert ipaddress.IPv4Network(b).subnet_of(ipaddress.IPv4Network(network.subnet))
    for i in range(2):
        services.host_range(network, Host.objects.create(name=f"x{i}", cpu_millis=1, memory_bytes=1).pk)
    with pytest.raises(Conflict, match="spans 4 hosts already"):
        services.host_range(network, Host.objects.create(name="x9", cpu_millis=1, memory_bytes=1).pk)
    assert NetworkSlot.objects.filter(network=network).count() == 4


def test_an_app_joins_at_most_the_engines_networks_less_its_bridge(tenant: Tenant, make_app: Any) -> None:
    with pytest.raises(InvalidRequest, match="at most 9 networks"):
        make_app(tenant, networks=[f"n{i}" for i in range(10)])
