"""The agents' side of tenant networks against in-memory engines: overlays, peers, remote names.

The agents are enrolled ones (no database): each learns the other hosts' members from its desired
document at its next reconcile (there is no push between them), so the tests reconcile every
host twice where one host's report is news to another."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.agent import overlays
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts.models import Host
from hostpanel.networks.models import Network
from hostpanel.networks.services import create_network, delete_network
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db


@pytest.fixture
def hosts(host: Host) -> dict[str, Host]:
    Host.objects.filter(pk=host.pk).update(address="192.0.2.1")
    second = Host.objects.create(name="h2", address="192.0.2.2", cpu_millis=4000, memory_bytes=8 * 2**30)
    return {"h1": Host.objects.get(pk=host.pk), "h2": second}


@pytest.fixture
def engines(hosts: dict[str, Host]) -> dict[int, FakeEngine]:
    """One engine per host."""
    return {h.pk: FakeEngine() for h in hosts.values()}


@pytest.fixture
def reconcile_all(agents: EnrolledAgents, engines: dict[int, FakeEngine]) -> Callable[[], None]:
    """Reconcile every host twice, each as its enrolled agent (the second round brings each the
    addresses the others reported in the first)."""

    def run() -> None:
        for _ in range(2):
            for host_id, engine in engines.items():
                agents.reconcile(engine, Host.objects.get(pk=host_id))

    return run


def place(app: App, host: Host) -> None:
    app.replicas.update(host=host)


def hosts_entries(engine: FakeEngine, network: Network) -> dict[str, list[str]]:
    return {e.ip: list(e.aliases) for e in engine.nets[network.engine_name].remote}


def test_apps_on_two_hosts_learn_each_others_names(
    tenant: Tenant,
    hosts: dict[str, Host],
    engines: dict[int, FakeEngine],
    make_app: Any,
    reconcile_all: Callable[[], None],
) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    web = make_app(tenant, "web", networks=["default"], network="bridge")
    db = make_app(tenant, "db", networks=[{"name": "default", "aliases": ["database"]}])
    place(web, h1)
    place(db, h2)
    reconcile_all()
    default = Network.objects.get(tenant=tenant, name="default")
    e1, e2 = engines[h1.pk], engines[h2.pk]
    # web's container: the bridge first (outbound, ports), then the overlay with its app name
    spec = e1.specs[Replica.objects.get(app=web).engine_id]
    assert [(j.name, j.aliases) for j in spec.networks] == [("bridge", ()), (default.engine_name, ("web",))]
    assert spec.labels[overlays.LABEL_NETWORKS] == f"default={default.engine_name}"
    # each host's overlay: the panel's subnet and VNI, its own slice, the other host as peer
    n1, n2 = e1.nets[default.engine_name], e2.nets[default.engine_name]
    assert (n1.subnet, n1.vni) == (n2.subnet, n2.vni) == (default.subnet, default.vni)
    assert n1.ip_range != n2.ip_range
    assert (n1.peers, n2.peers) == (["192.0.2.2"], ["192.0.2.1"])
    assert n1.labels == {overlays.LABEL_NETWORK: str(default.pk)}
    # addresses reported, and each side's remote names hold the other's
    db_ip = Replica.objects.get(app=db).network_addresses["default"]
    web_ip = Replica.objects.get(app=web).network_addresses["default"]
    assert ipaddress.IPv4Address(db_ip) in ipaddress.IPv4Network(n2.ip_range)
    assert hosts_entries(e1, default) == {db_ip: ["db", "database"]}
    assert hosts_entries(e2, default) == {web_ip: ["web"]}
    # a steady state rewrites nothing
    before = (e1.ensures, e1.remote_sets, e2.ensures, e2.remote_sets)
    reconcile_all()
    assert (e1.ensures, e1.remote_sets, e2.ensures, e2.remote_sets) == before


def test_names_follow_a_scale_and_a_move_without_restarting_anyone(
    tenant: Tenant,
    hosts: dict[str, Host],
    engines: dict[int, FakeEngine],
    make_app: Any,
    admin_actor: Any,
    reconcile_all: Callable[[], None],
    agents: EnrolledAgents,
) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    web = make_app(tenant, "web", networks=["default"])
    db = make_app(tenant, "db", networks=["default"])
    place(web, h1)
    place(db, h2)
    reconcile_all()
    default = Network.objects.get(tenant=tenant, name="default")
    e1, e2 = engines[h1.pk], engines[h2.pk]
    web_container = Replica.objects.get(app=web).engine_id
    deployments.scale(admin_actor, App.objects.get(pk=db.pk), 2)
    Replica.objects.filter(app=db).update(host=h2)
    agents.reconcile(e2, h2)  # db's host starts the new one and reports its address ...
    agents.reconcile(e1, h1)  # ... which web's host learns at its next reconcile
    ips = sorted(r.network_addresses["default"] for r in Replica.objects.filter(app=db))
    assert len(ips) == 2 and sorted(hosts_entries(e1, default)) == ips
    # db moves to web's host: h1 starts it (its name is local there now), h2 removes it and says so
    Replica.objects.filter(app=db).update(host=h1)
    agents.reconcile(e1, h1)
    agents.reconcile(e2, h2)
    agents.reconcile(e1, h1)
    assert hosts_entries(e1, default) == {}  # every db replica is local to web now
    assert e1.nets[default.engine_name].peers == []  # no member elsewhere
    assert Replica.objects.get(app=web).engine_id == web_container and e1.get(web_container).is_running


def test_another_tenants_apps_are_on_their_own_network(
    tenant: Tenant,
    hosts: dict[str, Host],
    engines: dict[int, FakeEngine],
    make_app: Any,
    reconcile_all: Callable[[], None],
) -> None:
    other = TenantFactory(slug="other")
    for t in (tenant, other):
        place(make_app(t, "web", networks=["default"]), hosts["h1"])
        place(make_app(t, "db", networks=["default"]), hosts["h2"])
    reconcile_all()
    mine, theirs = (Network.objects.get(tenant=t, name="default") for t in (tenant, other))
    assert mine.vni != theirs.vni and mine.subnet != theirs.subnet
    e1 = engines[hosts["h1"].pk]
    assert {a for e in e1.nets[mine.engine_name].remote for a in e.aliases} == {"db"}
    mine_ips = set(hosts_entries(e1, mine))
    assert mine_ips.isdisjoint(hosts_entries(e1, theirs))
    assert e1.nets[theirs.engine_name].tenant == "other"


def test_a_deleted_network_goes_from_the_hosts(
    tenant: Tenant,
    hosts: dict[str, Host],
    engines: dict[int, FakeEngine],
    make_app: Any,
    reconcile_all: Callable[[], None],
    admin_actor: Any,
) -> None:
    create_network(admin_actor, tenant, "back")
    app = make_app(tenant, "web", networks=["back"])
    place(app, hosts["h1"])
    reconcile_all()
    back = Network.objects.get(name="back")
    e1 = engines[hosts["h1"].pk]
    assert back.engine_name in e1.nets
    deployments.delete_app(admin_actor, App.objects.get(pk=app.pk))
    delete_network(admin_actor, back)
    reconcile_all()
    assert back.engine_name not in e1.nets


def test_hosts_sharing_one_network_stack_cannot_carry_one_network(
    tenant: Tenant,
    hosts: dict[str, Host],
    engines: dict[int, FakeEngine],
    make_app: Any,
    reconcile_all: Callable[[], None],
) -> None:
    Host.objects.update(address="127.0.0.1")  # two agents on one machine, as some tests run them
    place(make_app(tenant, "web", networks=["default"]), hosts["h1"])
    place(make_app(tenant, "db", networks=["default"]), hosts["h2"])
    reconcile_all()
    for failed in Replica.objects.all():  # each side says why, rather than running unreachable
        assert failed.state == Replica.State.FAILED
        assert "share the underlay address 127.0.0.1" in failed.message
