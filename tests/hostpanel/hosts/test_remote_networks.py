"""Tenant networks on host agents (agent/remote.py), against in-memory engines.

Each host's document carries its engine networks as the panel computes them (subnet, VNI, its
slice, peers and the other hosts' members: deployments/networking.py); its report carries its
replicas' addresses, which reach the other hosts' remote names through the panel. A host reports
addresses only of its own replicas, on their own networks, inside its own slice.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hostpanel.agent import overlays
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.networks.models import Network
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import Agent, as_host, place
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db
Hosts = dict[str, tuple[X25519PrivateKey, str]]


@pytest.fixture
def agents(enrolled: Hosts, tmp_path: Path, django_assert_num_queries: Any) -> dict[str, Agent]:
    Host.objects.filter(name="sa").update(address="192.0.2.1")
    Host.objects.filter(name="sb").update(address="192.0.2.2")
    return {
        name: Agent(enrolled[name][1], FakeEngine(), tmp_path / name, django_assert_num_queries)
        for name in ("sa", "sb")
    }


def remote_names(engine: FakeEngine, network: Network) -> dict[str, list[str]]:
    return {e.ip: list(e.aliases) for e in engine.nets[network.engine_name].remote}


def test_apps_on_two_hosts_learn_each_others_names_through_the_panel(
    agents: dict[str, Agent], tenant: Tenant, make_app: Any
) -> None:
    web = place(make_app(tenant, "web", networks=["default"], network="bridge"), "sa")
    db = place(make_app(tenant, "db", networks=[{"name": "default", "aliases": ["database"]}]), "sb")
    a, b = agents["sa"], agents["sb"]
    for agent in (a, b, a, b):  # each learns the other's address at its next reconcile
        agent.cycle()
    default = Network.objects.get(tenant=tenant, name="default")
    spec = a.engine.specs[Replica.objects.get(pk=web.pk).engine_id]
    assert [(j.name, j.aliases) for j in spec.networks] == [("bridge", ()), (default.engine_name, ("web",))]
    n1, n2 = a.engine.nets[default.engine_name], b.engine.nets[default.engine_name]
    assert (n1.subnet, n1.vni) == (n2.subnet, n2.vni) == (default.subnet, default.vni)
    assert n1.ip_range != n2.ip_range
    assert (n1.peers, n2.peers) == (["192.0.2.2"], ["192.0.2.1"])
    assert n1.labels == {overlays.LABEL_NETWORK: str(default.pk)}
    db_ip = Replica.objects.get(pk=db.pk).network_addresses["default"]
    web_ip = Replica.objects.get(pk=web.pk).network_addresses["default"]
    assert ipaddress.IPv4Address(db_ip) in ipaddress.IPv4Network(n2.ip_range)
    assert remote_names(a.engine, default) == {db_ip: ["db", "database"]}
    assert remote_names(b.engine, default) == {web_ip: ["web"]}
    before = (a.engine.ensures, a.engine.remote_sets, b.engine.ensures, b.engine.remote_sets)
    a.cycle()
    b.cycle()  # a steady state rewrites nothing
    assert (a.engine.ensures, a.engine.remote_sets, b.engine.ensures, b.engine.remote_sets) == before

    Replica.objects.filter(pk=web.pk).update(host=None)  # web moved off sa: its network there goes
    report, _ = a.cycle()
    assert report.removed == ["acme-web-0", default.engine_name] and a.engine.nets == {}
    b.cycle()
    assert remote_names(b.engine, default) == {}


def test_a_network_that_cannot_span_its_hosts_fails_the_replica_with_why(
    agents: dict[str, Agent], tenant: Tenant, make_app: Any
) -> None:
    Host.objects.filter(name="sb").update(address="192.0.2.1")  # one machine, one network stack
    place(make_app(tenant, "db", networks=["default"]), "sb")
    web = place(make_app(tenant, "web", networks=["default"]), "sa")
    report, states = agents["sa"].cycle()
    assert report.failed == ["acme-web-0"] and "share the underlay address" in states[web.pk]["message"]


def test_a_host_reports_addresses_only_of_its_replicas_on_their_networks_in_its_slice(
    agents: dict[str, Agent], enrolled: Hosts, tenant: Tenant, make_app: Any
) -> None:
    web = place(make_app(tenant, "web", networks=["default"]), "sa")
    db = place(make_app(tenant, "db", networks=["default"]), "sb")
    agents["sa"].cycle()
    mine = Replica.objects.get(pk=web.pk).network_addresses["default"]
    client = as_host(enrolled["sa"][1])

    def report(replica: Replica, addresses: Any) -> Any:
        entry = {"replica": replica.pk, "generation": replica.generation, "state": "running"}
        return client.post(
            "/internal/v1/host/report", {"replicas": [entry | {"addresses": addresses}]}, format="json"
        )

    forged = report(db, {"default": mine})  # another host's replica: ignored
    assert forged.status_code == 200 and forged.json()["ignored"] == [db.pk]
    assert Replica.objects.get(pk=db.pk).addresses == {}
    outside = str(ipaddress.IPv4Network(Network.objects.get(name="default").subnet)[-2])
    for bad, word in (
        ({"other": mine}, "on no tenant network 'other'"),
        ({"default": outside}, "is not in this host's slice"),
        ({"default": "not-an-address"}, "addresses"),
        ({"default": "2001:db8::1"}, "addresses"),
        ([mine], "addresses"),
        ({f"n{i}": mine for i in range(65)}, "at most 64 networks"),
    ):
        refused = report(web, bad)
        assert refused.status_code == 400 and word in refused.content.decode(), (bad, refused.content)
    assert Replica.objects.get(pk=web.pk).network_addresses == {"default": mine}
