"""The egress policy with real containers: no LAN, no metadata address, no host; internet and published ports.

The "LAN host", the "metadata service" and the "internet" are network
namespaces this test creates, each joined to the host by a veth and routed
there; before any container connects, the test checks that the kernel routes
each address into its namespace, so no packet ever leaves the machine.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from engine.engine import Engine
from engine.errors import InvalidSpec
from engine.images.model import Image
from engine.networks import firewall, netlink
from engine.networks.ports import parse_publish
from tests.engine.privileged.test_networks_bridge import _exec, _free_port, _sleeper, _web

pytestmark = pytest.mark.privileged

PORT = 7777
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode() + b"\\n")
    c.close()
"""


@dataclass(frozen=True)
class Remote:
    """A namespace standing in for a machine beyond the host, with a listener on PORT."""

    address: str
    host_side: str
    marker: str


@contextlib.contextmanager
def remote_machine(tmp_path: Path, host_side: str, address: str, prefixlen: int) -> Iterator[Remote]:
    """A namespace at ``address`` behind a veth whose host end is ``host_side``, answering on PORT."""
    ns = tmp_path / f"remote-{secrets.token_hex(3)}"
    host_if = f"hpe{secrets.token_hex(4)}"
    marker = f"reached-{address}"
    netlink.create_netns(ns)
    listener: subprocess.Popen[str] | None = None
    try:
        with IPRoute() as ipr:
            with ns.open("rb") as fd:
                ipr.link(
                    "add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd.fileno()}
                )
            idx = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=idx, address=host_side, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")

        def configure(inner: IPRoute) -> None:
            eth0 = inner.link_lookup(ifname="eth0")[0]
            inner.addr("add", index=eth0, address=address, prefixlen=prefixlen)
            inner.link("set", index=eth0, state="up")
            inner.route("add", dst="0.0.0.0/0", gateway=host_side)

        netlink.in_netns(ns, configure)
        with IPRoute() as ipr:  # never off the machine: the address must be routed into the namespace
            route = ipr.route("get", dst=address)[0]
            assert route.get_attr("RTA_OIF") == idx, f"{address} is not routed to the test namespace"
        listener = subprocess.Popen(
            ["nsenter", f"--net={ns}", sys.executable, "-c", LISTENER, str(PORT), marker],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield Remote(address=address, host_side=host_side, marker=marker)
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        netlink.delete_link(host_if)
        netlink.delete_netns(ns)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[dict[str, Remote]]:
    """A LAN host (10/8), a metadata service (169.254.169.254) and an internet host (TEST-NET-3)."""
    with (
        remote_machine(tmp_path, "10.250.77.1", "10.250.77.2", 30) as lan,
        remote_machine(tmp_path, "169.254.169.253", "169.254.169.254", 30) as metadata,
        remote_machine(tmp_path, "203.0.113.1", "203.0.113.2", 30) as internet,
    ):
        yield {"lan": lan, "metadata": metadata, "internet": internet}


def _connects(engine: Engine, cid: str, address: str, port: int, marker: str) -> bool:
    _code, out = _exec(engine, cid, f"nc -w 3 {address} {port} </dev/null")
    return marker in out


def test_containers_reach_the_internet_but_not_the_lan_metadata_or_host(
    engine: Engine, busybox: Image, world: dict[str, Remote]
) -> None:
    c = _sleeper(engine, "bridge", "acme")
    internet, lan, metadata = world["internet"], world["lan"], world["metadata"]
    assert _connects(engine, c, internet.address, PORT, internet.marker)
    assert not _connects(engine, c, lan.address, PORT, lan.marker)
    assert not _connects(engine, c, metadata.address, PORT, metadata.marker)
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
    assert _connects(engine, acme, lan.address, PORT, lan.marker)
    assert not _connects(engine, globex, lan.address, PORT, lan.marker)
    assert not _connects(engine, acme, metadata.address, PORT, metadata.marker)
    # a network the tenant creates later gets the same allow-list
    engine.network_create("later", tenant="acme")
    later = _sleeper(engine, "later", "acme")
    assert _connects(engine, later, lan.address, PORT, lan.marker)
    # cleared: back to the default
    assert engine.set_tenant_egress_allow("acme", []) == ()
    assert not _connects(engine, acme, lan.address, PORT, lan.marker)


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
