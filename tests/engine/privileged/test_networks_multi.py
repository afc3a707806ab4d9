"""Containers on several networks with real containers: names per network, no leaks across them,
live connect/disconnect, rename/remove, and a failed second join that leaves nothing behind."""

from __future__ import annotations

import subprocess
import time

import pytest

from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec, NotFound, RuntimeFailure
from engine.images.model import Image
from engine.networks import netlink
from engine.networks.model import NetworkJoin
from engine.runtime.model import ContainerSpec
from tests.engine.conftest import hpctl_argv, network_leaks
from tests.engine.privileged.test_networks_bridge import _exec

pytestmark = pytest.mark.privileged

HTTPD = ("httpd", "-f", "-p", "8080", "-h", "/etc")


def _hostname_of(engine: Engine, client: str, name: str) -> tuple[int, str]:
    """What ``client`` gets from http://name:8080/hostname (a name it resolves through /etc/hosts)."""
    return _exec(engine, client, f"timeout 5 wget -q -O- http://{name}:8080/hostname")


def _wait_web(engine: Engine, client: str, name: str, cid: str) -> bool:
    """Whether ``client`` gets ``cid``'s host name from http://name:8080 (retried a few seconds)."""
    for _ in range(50):
        if _hostname_of(engine, client, name)[1] == f"{cid[:12]}\n":
            return True
        time.sleep(0.1)
    return False


def _web(engine: Engine, name: str, *joins: NetworkJoin) -> str:
    c = engine.run(ContainerSpec(image="busybox", command=HTTPD, name=name, tenant="acme", networks=joins))
    for _ in range(100):
        if ":8080 " in _exec(engine, c.id, "netstat -ltn")[1]:
            return c.id
        time.sleep(0.05)
    raise AssertionError(f"{name} does not listen")


def test_a_container_on_two_networks_reaches_both_by_name_and_names_do_not_leak(
    engine: Engine, busybox: Image
) -> None:
    engine.network_create("front", tenant="acme")
    engine.network_create("back", tenant="acme")
    fe = _web(engine, "fe", NetworkJoin("front"))
    db = _web(engine, "db", NetworkJoin("back", ("database",)))
    app = _web(engine, "app", NetworkJoin("front", ("www",)), NetworkJoin("back", ("api",)))
    record = engine.get(app)
    assert [a["network"] for a in record.networks] == ["front", "back"]
    assert [a["interface"] for a in record.networks] == ["eth0", "eth1"]
    assert record.network == "front" and record.ip_address == record.networks[0]["ip_address"]
    # app reaches a member of each network by name (and alias)
    for name, cid in (("fe", fe), ("db", db), ("database", db)):
        code, out = _hostname_of(engine, app, name)
        assert code == 0 and out == f"{cid[:12]}\n", (name, out)
    # each side knows app by its name and its alias on that network only
    assert _hostname_of(engine, fe, "www")[1] == f"{app[:12]}\n"
    assert _hostname_of(engine, db, "api")[1] == f"{app[:12]}\n"
    fe_hosts, db_hosts = _exec(engine, fe, "cat /etc/hosts")[1], _exec(engine, db, "cat /etc/hosts")[1]
    assert "db" not in fe_hosts.split() and "database" not in fe_hosts and "api" not in fe_hosts.split()
    assert "fe" not in db_hosts.split() and "www" not in db_hosts.split()
    assert _hostname_of(engine, fe, "db")[0] != 0 and _hostname_of(engine, db, "fe")[0] != 0
    # and no address of the other network is reachable either (no routing through app)
    code, _ = _exec(engine, fe, f"timeout 3 wget -q -O- http://{engine.get(db).ip_address}:8080/hostname")
    assert code != 0
    # the default route is the first network's gateway; the second adds its subnet's route
    routes = _exec(engine, app, "ip route")[1]
    assert f"default via {engine.network('front').gateway} dev eth0" in routes, routes
    assert f"{engine.network('back').subnet} dev eth1" in routes and routes.count("default") == 1
    # glibc answers a name with all its lines (replicas) only with "multi on"
    assert _exec(engine, app, "cat /etc/host.conf")[1] == "multi on\n"
    # the container cannot route between its networks (no forwarding; no CAP_NET_ADMIN to turn it on)
    assert _exec(engine, app, "cat /proc/sys/net/ipv4/ip_forward")[1].strip() == "0"
    assert _exec(engine, app, "echo 1 > /proc/sys/net/ipv4/ip_forward")[0] != 0
    # a restart keeps every interface and name
    engine.restart(app, timeout=0)
    assert "eth1" in _exec(engine, app, "ip link")[1]
    assert _wait_web(engine, app, "db", db)
    # rename: every network's hosts files follow
    engine.rename(app, "app2")
    for peer in (fe, db):
        assert "app2" in _exec(engine, peer, "cat /etc/hosts")[1]
    engine.remove(app, force=True)
    assert "app2" not in _exec(engine, fe, "cat /etc/hosts")[1]
    assert "app2" not in _exec(engine, db, "cat /etc/hosts")[1]


def test_connect_and_disconnect_a_running_container_live(engine: Engine, busybox: Image) -> None:
    engine.network_create("front", tenant="acme")
    engine.network_create("back", tenant="acme")
    db = _web(engine, "db", NetworkJoin("back"))
    fe = _web(engine, "fe", NetworkJoin("front"))
    started = engine.get(fe).started_at
    assert _hostname_of(engine, fe, "db")[0] != 0
    engine.connect(fe, NetworkJoin("back", ("frontend",)))
    assert _hostname_of(engine, fe, "db")[1] == f"{db[:12]}\n"
    assert _hostname_of(engine, db, "frontend")[1] == f"{fe[:12]}\n"
    record = engine.get(fe)
    assert record.started_at == started and [a["network"] for a in record.networks] == ["front", "back"]
    with pytest.raises(Conflict):
        engine.connect(fe, NetworkJoin("back"))
    with pytest.raises(InvalidSpec):
        engine.connect(fe, NetworkJoin("host"))
    engine.disconnect(fe, "back")
    assert _hostname_of(engine, fe, "db")[0] != 0
    assert "frontend" not in _exec(engine, db, "cat /etc/hosts")[1]
    assert "eth1" not in _exec(engine, fe, "ip link")[1]
    assert [a["network"] for a in engine.get(fe).networks] == ["front"]
    with pytest.raises(Conflict):
        engine.disconnect(fe, "back")
    # a stopped container is connected too, and its name is there once it runs again
    engine.stop(fe, timeout=0)
    engine.connect(fe, NetworkJoin("back"))
    engine.start(fe)
    assert "fe" in _exec(engine, db, "cat /etc/hosts")[1].split()
    none = engine.run(ContainerSpec(image="busybox", command=("sleep", "60"), tenant="acme"))
    with pytest.raises(InvalidSpec, match="no network namespace"):
        engine.connect(none.id, NetworkJoin("front"))


def test_a_failed_second_join_leaves_nothing_behind(
    engine: Engine, busybox: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.network_create("front", tenant="acme")
    engine.network_create("back", tenant="acme")
    peer = engine.run(
        ContainerSpec(image="busybox", command=("sleep", "60"), name="peer", tenant="acme", network="front")
    )
    before = _exec(engine, peer.id, "cat /etc/hosts")[1]

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeFailure("cannot set up the container's network: refused by the test")

    monkeypatch.setattr(netlink, "add_veth_to_netns", refuse)
    spec = ContainerSpec(
        image="busybox",
        command=("sleep", "60"),
        name="two",
        tenant="acme",
        networks=(NetworkJoin("front"), NetworkJoin("back")),
    )
    with pytest.raises(RuntimeFailure, match="refused by the test"):
        engine.create(spec)
    assert [c.name for c in engine.list(all=True)] == ["peer"]
    assert engine.networks.endpoints("back") == {} and list(engine.networks.endpoints("front")) == [peer.id]
    assert _exec(engine, peer.id, "cat /etc/hosts")[1] == before
    engine.remove(peer.id, force=True)
    for network in ("front", "back"):
        engine.network_remove(network)
    assert network_leaks(engine.paths.root, engine.instance) == []  # no veth, namespace or address


def test_bad_network_lists_are_refused_naming_the_problem(engine: Engine, busybox: Image) -> None:
    engine.network_create("front", tenant="acme")
    engine.network_create("theirs", tenant="globex")
    mine = engine.run(ContainerSpec(image="busybox", command=("sleep", "60"), tenant="acme", network="front"))
    # another tenant's network: not found, at create (after a good first network) and at connect
    with pytest.raises(NotFound, match="theirs"):
        engine.create(
            ContainerSpec(
                image="busybox", tenant="acme", networks=(NetworkJoin("front"), NetworkJoin("theirs"))
            )
        )
    with pytest.raises(NotFound, match="theirs"):
        engine.connect(mine.id, NetworkJoin("theirs"))
    assert engine.networks.endpoints("theirs") == {} and list(engine.networks.endpoints("front")) == [mine.id]
    engine.remove(mine.id, force=True)
    cases = [
        ((NetworkJoin("front"), NetworkJoin("front")), "twice"),
        ((NetworkJoin("front"), NetworkJoin("none")), "cannot be combined"),
        ((NetworkJoin("front", ("bad alias!",)),), "alias"),
    ]
    for joins, message in cases:
        with pytest.raises(InvalidSpec, match=message):
            engine.create(ContainerSpec(image="busybox", tenant="acme", networks=joins))
    assert engine.list(all=True) == []
    assert engine.networks.endpoints("front") == {}


def test_hpctl_runs_on_two_networks_and_connects_live(engine: Engine, busybox: Image) -> None:
    def hpctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(hpctl_argv(engine, *args), capture_output=True, text=True, timeout=60)

    for name in ("front", "back", "side"):
        assert hpctl("network", "create", name, "--tenant", "acme").returncode == 0
    run = hpctl(
        "run", "-d", "--name", "app", "--tenant", "acme", "--network", "front",
        "--network", "name=back,alias=api", "--network-alias", "x", "busybox", "sleep", "60",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    attachments = engine.get("app").networks
    assert [(a["network"], a["aliases"]) for a in attachments] == [("front", ["x"]), ("back", ["api", "x"])]
    assert hpctl("network", "connect", "side", "app", "--alias", "s").returncode == 0
    assert [a["interface"] for a in engine.get("app").networks] == ["eth0", "eth1", "eth2"]
    assert "s" in _exec(engine, "app", "cat /etc/hosts")[1].split()
    assert hpctl("network", "disconnect", "back", "app").returncode == 0
    assert [a["network"] for a in engine.get("app").networks] == ["front", "side"]
    bad = hpctl("run", "-d", "--tenant", "acme", "--network", "name=front,ip=1.2.3.4", "busybox", "true")
    assert bad.returncode != 0 and "ip=1.2.3.4" in bad.stderr
    again = hpctl("network", "disconnect", "back", "app")
    assert again.returncode != 0 and "not connected" in again.stderr
    # off every network: loopback only, and its namespace still goes with it (the fixture checks)
    for name in ("front", "side"):
        assert hpctl("network", "disconnect", name, "app").returncode == 0
    record = engine.get("app")
    assert (record.network, record.networks, record.ip_address) == ("none", [], "")
    assert _exec(engine, "app", "ip -o link | grep -c ': eth'")[1].strip() == "0"
    assert hpctl("network", "connect", "front", "app").returncode == 0  # and back on one
    assert engine.get("app").networks[0]["interface"] == "eth0"
    engine.remove("app", force=True)
    for name in ("front", "back", "side"):
        engine.network_remove(name)
    assert network_leaks(engine.paths.root, engine.instance) == []
