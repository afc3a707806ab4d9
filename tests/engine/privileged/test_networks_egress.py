"""The egress policy with real containers: no LAN, no metadata address, no host; internet and published ports.

The "LAN host", the "metadata service" and the "internet" are network
namespaces this test creates (tests/netsim.py), routed into them, so no packet
ever leaves the machine.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import InvalidSpec
from engine.images.model import Image
from engine.networks import firewall
from engine.networks.ports import parse_publish
from tests.engine.privileged.test_networks_bridge import _exec, _free_port, _sleeper, _web
from tests.netsim import OTHER_PORT, PORT, Remote, connects, simulated_world

pytestmark = pytest.mark.privileged


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[dict[str, Remote]]:
    """The LAN host, metadata service and internet host of tests/netsim.py."""
    with simulated_world(tmp_path) as world:
        yield world


def test_containers_reach_the_internet_but_not_the_lan_metadata_or_host(
    engine: Engine, busybox: Image, world: dict[str, Remote]
) -> None:
    c = _sleeper(engine, "bridge", "acme")
    internet, lan, metadata = world["internet"], world["lan"], world["metadata"]
    assert connects(engine, c, internet.address, PORT, internet.marker)
    assert not connects(engine, c, lan.address, PORT, lan.marker)
    assert not connects(engine, c, metadata.address, PORT, metadata.marker)
    # the host's own address on the LAN, any port not published: closed
    with socket.socket() as own:
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.bind((lan.host_side, 0))
        own.listen(4)
        own.setblocking(False)
        _exec(engine, c, f"nc -w 3 {lan.host_side} {own.getsockname()[1]} </dev/null; echo done")
        with pytest.raises(BlockingIOError):
            own.accept()


def test_another_tenants_published_port_stays_reachable(
    engine: Engine, busybox: Image, world: dict[str, Remote]
) -> None:
    port = _free_port()
    web = _web(engine, "bridge", "globex", "shop", ports=(parse_publish(f"{port}:8080"),))
    client = _sleeper(engine, "bridge", "acme")
    # on the host's LAN address (a private range) the published port still answers
    _code, out = _exec(
        engine, client, f"timeout 5 wget -q -O- http://{world['lan'].host_side}:{port}/hostname"
    )
    assert out == f"{web[:12]}\n"


def test_allow_list_opens_a_range_for_one_tenant_only(
    engine: Engine, busybox: Image, world: dict[str, Remote]
) -> None:
    lan, metadata = world["lan"], world["metadata"]
    acme = _sleeper(engine, "bridge", "acme")
    globex = _sleeper(engine, "bridge", "globex")
    assert engine.set_tenant_egress_allow("acme", ["10.250.77.0/30"]) == ("10.250.77.0/30",)
    assert engine.tenant_egress_allow("acme") == ("10.250.77.0/30",)
    assert connects(engine, acme, lan.address, PORT, lan.marker)
    assert not connects(engine, globex, lan.address, PORT, lan.marker)
    assert not connects(engine, acme, metadata.address, PORT, metadata.marker)
    # a network the tenant creates later gets the same allow-list
    engine.network_create("later", tenant="acme")
    later = _sleeper(engine, "later", "acme")
    assert connects(engine, later, lan.address, PORT, lan.marker)
    # cleared: back to the default
    assert engine.set_tenant_egress_allow("acme", []) == ()
    assert not connects(engine, acme, lan.address, PORT, lan.marker)


def test_bad_allow_list_changes_nothing(engine: Engine, busybox: Image) -> None:
    _sleeper(engine, "bridge", "acme")
    engine.set_tenant_egress_allow("acme", ["10.250.0.0/16"])
    before = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    for bad in (["10.250.0.1/16"], ["10.0.0.0/8", "nonsense"]):
        with pytest.raises(InvalidSpec, match="invalid allow-list entry"):
            engine.set_tenant_egress_allow("acme", bad)
    with pytest.raises(InvalidSpec):
        engine.set_tenant_egress_allow("../etc", ["10.0.0.0/8"])
    assert subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout == before
    assert engine.tenant_egress_allow("acme") == ("10.250.0.0/16",)


def test_egress_rules_go_with_the_last_network(engine: Engine, busybox: Image) -> None:
    engine.set_tenant_egress_allow("acme", ["10.250.0.0/16"])
    c = _sleeper(engine, "bridge", "acme")
    assert (
        "10.250.0.0/16" in subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    )
    engine.remove(c, force=True)
    engine.network_remove("bridge.acme")
    assert firewall.instance_tables_present(engine.instance) == []


def test_protected_hosts_keep_only_their_open_ports_even_against_an_allow_list(
    engine: Engine, busybox: Image, world: dict[str, Remote]
) -> None:
    # the "internet" machine plays another host of the pool with a public address: its Redis on
    # PORT is closed, another tenant's published port OTHER_PORT stays open
    other = world["internet"]
    c = _sleeper(engine, "bridge", "acme")
    engine.set_tenant_egress_allow("acme", ["203.0.113.0/24"])
    assert engine.set_egress_protected({other.address: [f"{OTHER_PORT}/tcp"]}) == {
        other.address: (f"{OTHER_PORT}/tcp",)
    }
    assert not connects(engine, c, other.address, PORT, other.marker)
    assert connects(engine, c, other.address, OTHER_PORT, other.marker)
    before = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    with pytest.raises(InvalidSpec, match="invalid open port"):
        engine.set_egress_protected({other.address: ["99999/tcp"]})
    assert subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout == before
    assert engine.set_egress_protected({}) == {}
    assert connects(engine, c, other.address, PORT, other.marker)
