"""Bridge networks with real containers: names, isolation, published ports, none, internal, leaks.

Traffic only ever goes over loopback, the host's own addresses (local delivery)
and namespaces these tests create.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec, NotFound
from engine.images.model import Image
from engine.networks import netlink
from engine.networks.ports import parse_publish
from engine.runtime.model import ContainerSpec, ExecSpec
from tests.engine.conftest import network_leaks

pytestmark = pytest.mark.privileged

HTTPD = ("httpd", "-f", "-p", "8080", "-h", "/etc")


def _exec(engine: Engine, ref: str, script: str, timeout: float = 30) -> tuple[int, str]:
    proc = engine.exec(
        ref, ExecSpec(command=("sh", "-c", script)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode()


def _wget(engine: Engine, ref: str, url: str) -> tuple[int, str, float]:
    start = time.monotonic()
    code, out = _exec(engine, ref, f"timeout 5 wget -q -O- {url}")
    return code, out, time.monotonic() - start


def _wait_listening(engine: Engine, ref: str, port: int = 8080) -> None:
    for _ in range(100):
        if f":{port} " in _exec(engine, ref, "netstat -ltn")[1]:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} in {ref}")


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _http_get(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode().split("\r\n\r\n", 1)[-1]


def _host_addresses() -> list[str]:
    """The host's own non-loopback IPv4 addresses (traffic to them is delivered locally)."""
    with IPRoute() as ipr:
        addrs = [a.get("address") for a in ipr.get_addr(family=2)]
    return [a for a in addrs if a and not ipaddress.IPv4Address(a).is_loopback]


def _web(engine: Engine, network: str, tenant: str, name: str, **kw: object) -> str:
    c = engine.run(
        ContainerSpec(image="busybox", command=HTTPD, name=name, tenant=tenant, network=network, **kw)  # type: ignore[arg-type]
    )
    _wait_listening(engine, c.id)
    return c.id


def _sleeper(engine: Engine, network: str, tenant: str, name: str | None = None) -> str:
    c = engine.run(
        ContainerSpec(image="busybox", command=("sleep", "60"), name=name, tenant=tenant, network=network)
    )
    return c.id


@contextlib.contextmanager
def outside_client(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A namespace playing an outside client, joined to the host by a veth; yields (netns, host side IP)."""
    ns = tmp_path / f"client-{secrets.token_hex(3)}"
    host_if = f"hpc{secrets.token_hex(4)}"
    netlink.create_netns(ns)
    try:
        with IPRoute() as ipr:
            fd = ns.open("rb")
            try:
                ipr.link(
                    "add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd.fileno()}
                )
            finally:
                fd.close()
            idx = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=idx, address="198.51.100.1", prefixlen=30)
            ipr.link("set", index=idx, state="up")

        def configure(inner: IPRoute) -> None:
            eth0 = inner.link_lookup(ifname="eth0")[0]
            inner.addr("add", index=eth0, address="198.51.100.2", prefixlen=30)
            inner.link("set", index=eth0, state="up")
            inner.route("add", dst="0.0.0.0/0", gateway="198.51.100.1")

        netlink.in_netns(ns, configure)
        yield ns, "198.51.100.1"
    finally:
        netlink.delete_link(host_if)
        netlink.delete_netns(ns)


def _from_namespace(ns: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={ns}", "timeout", "5", "busybox", "wget", "-q", "-O-", url],
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_containers_on_one_network_talk_by_name_and_alias(engine: Engine, busybox: Image) -> None:
    engine.network_create("app", tenant="acme")
    web = _web(engine, "app", "acme", "web", network_aliases=("www", "api.internal"))
    cli = _sleeper(engine, "app", "acme", "cli")
    for host in ("web", "www", "api.internal"):
        code, out, _ = _wget(engine, cli, f"http://{host}:8080/hostname")
        assert code == 0 and out == f"{web[:12]}\n", (host, out)
    # the earlier container learnt about the later one; its hosts file was rewritten in place
    code, hosts = _exec(engine, web, "cat /etc/hosts")
    assert "cli" in hosts and "www" in hosts
    assert _exec(engine, cli, "cat /etc/resolv.conf")[0] == 0
    engine.remove(cli, force=True)
    assert "cli" not in _exec(engine, web, "cat /etc/hosts")[1]
    info = engine.get(web)
    assert info.network == "app" and ipaddress.IPv4Address(info.ip_address) in ipaddress.IPv4Network(
        engine.network("app").subnet
    )


def test_default_bridge_network_is_per_tenant_and_created_on_first_use(
    engine: Engine, busybox: Image
) -> None:
    a = engine.get(_sleeper(engine, "bridge", "acme"))
    b = engine.get(_sleeper(engine, "bridge", "globex"))
    assert a.network == "bridge.acme" and b.network == "bridge.globex"
    assert engine.network("bridge.acme").subnet != engine.network("bridge.globex").subnet


def test_different_tenants_cannot_connect_and_fail_fast(engine: Engine, busybox: Image) -> None:
    web = engine.get(_web(engine, "bridge", "acme", "acme-web"))
    intruder = engine.get(_sleeper(engine, "bridge", "globex", "intruder"))
    acme_net, globex_net = engine.network("bridge.acme"), engine.network("bridge.globex")
    targets = [
        f"http://{web.ip_address}:8080/hostname",  # the other tenant's container
        f"http://{acme_net.gateway}:8080/hostname",  # via the other tenant's gateway
        f"http://{globex_net.gateway}:8080/hostname",  # via its own gateway
        "http://acme-web:8080/hostname",  # the name is not even known
    ]
    for url in targets:
        code, out, took = _wget(engine, intruder.id, url)
        assert code != 0, (url, out)
        assert took < 2.5, f"{url} took {took:.1f}s: the connection must be rejected, not time out"
    # and the other direction
    code, _, took = _wget(engine, web.id, f"http://{intruder.ip_address}:8080/")
    assert code != 0 and took < 2.5


def test_container_cannot_reach_a_host_listener(engine: Engine, busybox: Image) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        c = engine.get(_sleeper(engine, "bridge", "acme"))
        gateway = engine.network("bridge.acme").gateway
        for address in [gateway, *_host_addresses()]:
            start = time.monotonic()
            _code, out = _exec(engine, c.id, f"nc -w 3 {address} {port} </dev/null && echo CONNECTED")
            assert "CONNECTED" not in out, f"reached the host on {address}:{port}"
            assert time.monotonic() - start < 2.5
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_published_port_answers_from_loopback_host_address_and_outside(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    port = _free_port()
    web = _web(engine, "bridge", "acme", "pub", ports=(parse_publish(f"{port}:8080"),))
    expected = f"{web[:12]}\n"
    assert _http_get("127.0.0.1", port) == expected
    for address in _host_addresses():
        assert _http_get(address, port) == expected
    with outside_client(tmp_path) as (ns, host_ip):
        proc = _from_namespace(ns, f"http://{host_ip}:{port}/hostname")
        assert proc.returncode == 0 and proc.stdout == expected, proc.stderr
        # the outside cannot reach the container's own address directly
        ip = engine.get(web).ip_address
        assert _from_namespace(ns, f"http://{ip}:8080/hostname").returncode != 0
    assert engine.get(web).ports == [
        {"host_port": port, "container_port": 8080, "protocol": "tcp", "host_ip": "0.0.0.0"}
    ]


def test_port_published_on_loopback_only_is_not_on_other_addresses(engine: Engine, busybox: Image) -> None:
    port = _free_port()
    web = _web(engine, "bridge", "acme", "local", ports=(parse_publish(f"127.0.0.1:{port}:8080"),))
    assert _http_get("127.0.0.1", port) == f"{web[:12]}\n"
    for address in _host_addresses():
        with pytest.raises(OSError):
            _http_get(address, port)


def test_network_none_has_only_loopback(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), network="none"))
    _code, out = _exec(engine, c.id, "ip -o link | cut -d: -f2")
    assert [line.strip() for line in out.split()] == ["lo"]
    assert _exec(engine, c.id, "ip route")[1].strip() == ""
    assert engine.get(c.id).ip_address == ""


def test_internal_network_reaches_only_its_own_members(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    engine.network_create("backend", tenant="acme", internal=True)
    db = _web(engine, "backend", "acme", "db")
    app = _sleeper(engine, "backend", "acme", "app")
    assert _wget(engine, app, "http://db:8080/hostname")[0] == 0
    assert "default" not in _exec(engine, app, "ip route")[1]
    with outside_client(tmp_path) as (_ns, outside_ip):
        code, _, took = _wget(engine, app, f"http://{outside_ip}:8080/")
        assert code != 0 and took < 6
    code, out = _exec(engine, app, "nc -w 2 198.51.100.2 80 </dev/null && echo CONNECTED")
    assert "CONNECTED" not in out
    assert db


def test_host_network_is_operator_only(engine: Engine, busybox: Image) -> None:
    with pytest.raises(InvalidSpec, match="operators only"):
        engine.create(ContainerSpec(image="busybox", command=("true",), network="host", tenant="acme"))
    assert engine.list(all=True) == []
    c = engine.run(
        ContainerSpec(image="busybox", command=("sleep", "30"), network="host", allow_privileged=True)
    )
    assert "eth0" in _exec(engine, c.id, "ip -o link")[1] or _host_addresses() == []


def test_network_rm_refused_while_in_use_and_kept_after_last_container(
    engine: Engine, busybox: Image
) -> None:
    engine.network_create("shop", tenant="acme", subnet="10.231.7.0/24")
    c = _sleeper(engine, "shop", "acme")
    with pytest.raises(Conflict, match="in use"):
        engine.network_remove("shop")
    engine.remove(c, force=True)
    assert engine.network("shop").subnet == "10.231.7.0/24"
    engine.network_remove("shop")
    with pytest.raises(NotFound):
        engine.network("shop")


def test_engine_restart_keeps_the_network_of_running_containers(engine: Engine, busybox: Image) -> None:
    web = engine.get(_web(engine, "bridge", "acme", "keep"))
    again = Engine(root=engine.paths.root, instance=engine.instance)
    assert again.get(web.id).ip_address == web.ip_address
    cli = _sleeper(again, "bridge", "acme")
    assert again.get(cli).ip_address != web.ip_address
    assert _wget(again, cli, "http://keep:8080/hostname")[1] == f"{web.id[:12]}\n"


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"network": "nosuch"}, NotFound, "no such network"),
        ({"network": "theirs"}, NotFound, "another tenant"),
        ({"network": "host"}, InvalidSpec, "operators only"),
        ({"network": "none", "ports": (parse_publish("18081:80"),)}, InvalidSpec, "cannot publish"),
        ({"network_aliases": ("bad alias",)}, InvalidSpec, "invalid network alias"),
        ({"ports": (parse_publish("203.0.113.7:18083:80"),)}, InvalidSpec, "not an address of this host"),
    ],
)
def test_bad_container_network_requests_leave_nothing(
    engine: Engine, busybox: Image, kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    engine.network_create("theirs", tenant="globex")
    before = sorted(n.name for n in engine.network_list())
    spec = ContainerSpec(image="busybox", command=("true",), tenant="acme", network="bridge")
    spec = ContainerSpec(**{**spec.__dict__, **kwargs})  # type: ignore[arg-type]
    with pytest.raises(error, match=words):
        engine.create(spec)
    assert engine.list(all=True) == []
    assert sorted(n.name for n in engine.network_list()) == before  # not even the default network
    assert list((engine.paths.run / "netns").glob("*")) == []
    assert engine.networks.endpoints("theirs") == {}


def test_host_port_in_use_is_refused_and_leaves_nothing(engine: Engine, busybox: Image) -> None:
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    try:
        spec = ContainerSpec(
            image="busybox",
            command=("true",),
            tenant="acme",
            network="bridge",
            ports=(parse_publish(f"{busy}:80"),),
        )
        with pytest.raises(Conflict, match="another process"):
            engine.create(spec)
        assert engine.list(all=True) == []
    finally:
        holder.close()
    ours = _free_port()
    engine.create(
        ContainerSpec(
            image="busybox", command=("true",), network="bridge", ports=(parse_publish(f"{ours}:80"),)
        )
    )
    with pytest.raises(Conflict, match="already published"):
        engine.create(
            ContainerSpec(
                image="busybox",
                command=("true",),
                network="bridge",
                ports=(parse_publish(f"127.0.0.1:{ours}:81"),),
            )
        )
    assert len(engine.list(all=True)) == 1
    assert not list((engine.paths.run / "netns").iterdir())[1:]


@pytest.mark.parametrize(
    "subnet, error, words",
    [
        ("10.89.0.0", InvalidSpec, "CIDR"),
        ("10.89.0.1/24", InvalidSpec, "host bits"),
        ("300.1.1.0/24", InvalidSpec, "invalid subnet"),
        ("127.0.0.0/24", InvalidSpec, "loopback"),
        ("10.232.0.0/30", InvalidSpec, "prefix length"),
        ("10.232.0.0/16", Conflict, "overlaps"),
    ],
)
def test_bad_subnets_are_refused_and_leave_nothing(
    engine: Engine, subnet: str, error: type[Exception], words: str
) -> None:
    engine.network_create("first", subnet="10.232.5.0/24")
    with pytest.raises(error, match=words):
        engine.network_create("second", subnet=subnet)
    assert [n.name for n in engine.network_list()] == ["first"]


def test_subnet_overlapping_a_host_route_is_refused(engine: Engine) -> None:
    with IPRoute() as ipr:
        routes = [r for r in ipr.get_routes(family=2, table=254) if r.get("dst") and r["dst_len"] >= 8]
    if not routes:
        pytest.skip("the host has no non-default IPv4 route to collide with")
    route = ipaddress.IPv4Network(f"{routes[0].get('dst')}/{routes[0]['dst_len']}")
    subnet = route if route.prefixlen <= 29 else route.supernet(new_prefix=24)
    with pytest.raises(Conflict, match="overlaps"):
        engine.network_create("clash", subnet=str(subnet))
    assert engine.network_list() == []


def test_fifty_create_rm_cycles_leave_nothing(engine: Engine, busybox: Image) -> None:
    port = _free_port()
    engine.network_create("cycle", tenant="acme")
    for i in range(50):
        c = engine.create(
            ContainerSpec(
                image="busybox",
                command=("true",),
                tenant="acme",
                network="cycle",
                network_aliases=(f"a{i}",),
                ports=(parse_publish(f"{port}:80"),),
            )
        )
        engine.remove(c.id)
    assert engine.networks.endpoints("cycle") == {}
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert f"dport {port}" not in ruleset
    engine.network_remove("cycle")
    assert network_leaks(engine.paths.root, engine.instance) == []


def test_bridged_container_cannot_see_host_devices_or_reconfigure_its_network(
    engine: Engine, busybox: Image
) -> None:
    c = _sleeper(engine, "bridge", "acme")
    _code, out = _exec(engine, c, "ls /sys/class/net /sys/devices/virtual/net")
    assert engine.network("bridge.acme").bridge not in out and "eth0" not in out.replace("/sys", "")
    # no host interface name anywhere in the container's /sys, not even below a PCI device
    host_nics = set(os.listdir("/sys/class/net")) | {engine.network("bridge.acme").bridge}
    code, out = _exec(engine, c, "find /sys/devices /sys/class /sys/bus -name '*' 2>/dev/null")
    seen = {line.rsplit("/", 1)[-1] for line in out.splitlines()}
    assert len(seen) > 100 and "cpu0" in seen  # it did look (and /sys/devices/system stays)
    assert not host_nics & seen, f"host NIC names visible in /sys: {host_nics & seen}"
    for attack in ("ip link set eth0 mtu 1400", "ip addr add 10.99.0.9/24 dev eth0", "ip route del default"):
        code, out = _exec(engine, c, attack)
        assert code != 0 and "not permitted" in out, attack
    # its own port < 1024 still binds (the namespace lets every user bind low ports)
    code, out = _exec(engine, c, "timeout 1 nc -l -p 80; echo rc=$?")
    assert "Permission denied" not in out and "rc=" in out


def test_restarted_container_keeps_its_address_and_names(engine: Engine, busybox: Image) -> None:
    web = engine.get(_web(engine, "bridge", "acme", "again"))
    cli = _sleeper(engine, "bridge", "acme")
    engine.stop(web.id, timeout=1)
    engine.start(web.id)
    _wait_listening(engine, web.id)
    assert engine.get(web.id).ip_address == web.ip_address
    assert _wget(engine, cli, "http://again:8080/hostname")[1] == f"{web.id[:12]}\n"


def test_subnet_pool_is_configurable(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTPANEL_SUBNET_POOL", "10.234.0.0/20")
    pooled = Engine(root=engine.paths.root, instance=engine.instance)
    net = pooled.network_create("pooled")
    assert ipaddress.IPv4Network(net.subnet).subnet_of(ipaddress.IPv4Network("10.234.0.0/20"))
    pooled.network_remove("pooled")


def test_published_port_is_public_even_to_containers_and_itself(engine: Engine, busybox: Image) -> None:
    addresses = _host_addresses()
    if not addresses:
        pytest.skip("the host has no non-loopback IPv4 address")
    port = _free_port()
    web = _web(engine, "bridge", "acme", "shop", ports=(parse_publish(f"{port}:8080"),))
    neighbour = _sleeper(engine, "bridge", "acme")
    stranger = _sleeper(engine, "bridge", "globex")
    for client in (neighbour, stranger, web):  # same network, another tenant, itself (hairpin)
        code, out, _ = _wget(engine, client, f"http://{addresses[0]}:{port}/hostname")
        assert code == 0 and out == f"{web[:12]}\n", client


def test_published_udp_port(engine: Engine, busybox: Image) -> None:
    # busybox has no UDP server: a host process inside the container's namespace plays one
    port = _free_port()
    c = engine.run(
        ContainerSpec(
            image="busybox",
            command=("sleep", "30"),
            network="bridge",
            ports=(parse_publish(f"127.0.0.1:{port}:5353/udp"),),
        )
    )
    server = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353)); "
        "s.settimeout(10); print(s.recvfrom(100)[0].decode(), flush=True)"
    )
    with subprocess.Popen(
        ["nsenter", f"--net={c.netns_path}", sys.executable, "-c", server], stdout=subprocess.PIPE, text=True
    ) as proc:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while proc.poll() is None:
                s.sendto(b"hello over udp", ("127.0.0.1", port))
                time.sleep(0.05)
        assert proc.stdout is not None and proc.stdout.read().strip() == "hello over udp"
