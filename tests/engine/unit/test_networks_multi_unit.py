"""Several networks per container, without root: hosts-file merging and ordering, replicas, the
network options of hpctl, and remote endpoints rewriting every member's hosts file in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli.networks import parse_remote_entry
from engine.errors import InvalidSpec, NotFound
from engine.fsutil import atomic_write_json
from engine.networks.hosts import HostsSection, merged_hosts_text
from engine.networks.joins import joins_from_options, parse_network_option
from engine.networks.manager import NetworkManager
from engine.networks.model import Network, NetworkJoin, RemoteEndpoint
from engine.paths import EnginePaths
from engine.runtime.model import Container, ContainerSpec


def ep(name: str, ip: str, *aliases: str, hostname: str = "") -> dict[str, object]:
    return {"name": name, "ip": ip, "aliases": list(aliases), "hostname": hostname}


def test_hosts_of_a_container_on_two_networks_lists_each_networks_names_in_join_order() -> None:
    front = HostsSection(ep("app", "10.1.0.5", "www", hostname="h"), [ep("fe", "10.1.0.9")])
    back = HostsSection(ep("app", "10.2.0.7", "api"), [ep("db", "10.2.0.3", "database")])
    lines = merged_hosts_text("h", [front, back]).splitlines()
    assert lines == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.1.0.5\th app www",  # the host name on the first network only
        "10.2.0.7\tapp api",
        "10.1.0.9\tfe",
        "10.2.0.3\tdb database",
    ]


def test_replicas_give_one_line_per_address_once_in_an_order_of_each_clients_own() -> None:
    others = [
        ep("web-2", "10.1.0.10", "web"),
        ep("web-1", "10.1.0.9", "web"),
        ep("web-1", "10.1.0.9", "web"),  # listed twice (local and remote): one line
    ]

    def first_replica(client_ip: str, peers: list[dict[str, object]]) -> str:
        text = merged_hosts_text("h", [HostsSection(ep("cli", client_ip, hostname="h"), peers)])
        assert text.count("10.1.0.9\tweb-1 web\n") == 1 and text.count("10.1.0.10\tweb-2 web\n") == 1
        return next(line.split("\t")[0] for line in text.splitlines() if line.endswith(" web"))

    firsts = {first_replica(f"10.1.0.{i}", others) for i in range(20, 40)}
    assert firsts == {"10.1.0.9", "10.1.0.10"}  # clients spread over the replicas (resolvers take the first)
    # and each client's order is stable: the same set in another order gives the same file
    assert first_replica("10.1.0.21", others) == first_replica("10.1.0.21", others[::-1])


def test_a_container_on_no_network_names_itself_on_loopback() -> None:
    assert merged_hosts_text("solo", []).endswith("127.0.1.1\tsolo\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("front", NetworkJoin("front")),
        ("name=back,alias=db,alias=pg", NetworkJoin("back", ("db", "pg"))),
    ],
)
def test_network_option_forms(value: str, expected: NetworkJoin) -> None:
    assert parse_network_option(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "use NAME"),
        ("a,b", "use NAME"),
        ("name=a,ip=10.0.0.2", "'ip=10.0.0.2' is not one of"),
        ("alias=x", "name=NAME is missing"),
        ("name=a,name=b", "twice"),
    ],
)
def test_bad_network_options_are_refused_naming_the_part(value: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_network_option(value)


def test_network_alias_applies_to_every_network_once() -> None:
    joins = joins_from_options(["front", "name=back,alias=x"], ["x", "y"])
    assert joins == (NetworkJoin("front", ("x", "y")), NetworkJoin("back", ("x", "y")))


def test_spec_networks_take_precedence_and_the_old_fields_still_work() -> None:
    assert ContainerSpec(image="i", network="app", network_aliases=("a",)).network_joins() == (
        NetworkJoin("app", ("a",)),
    )
    joins = (NetworkJoin("front"), NetworkJoin("back"))
    assert ContainerSpec(image="i", network="ignored", networks=joins).network_joins() == joins


def test_a_record_from_before_several_networks_reads_as_one_attachment() -> None:
    old = Container.from_dict(
        {
            "id": "c" * 64, "name": "n", "tenant": "t", "image": "i", "image_id": "x", "command": [],
            "status": "created", "created": "", "network": "app", "ip_address": "10.1.0.2",
            "network_aliases": ["a"],
        }
    )  # fmt: skip
    assert old.attachments() == [
        {"network": "app", "ip_address": "10.1.0.2", "aliases": ["a"], "interface": "eth0"}
    ]
    assert Container.from_dict({**old.to_dict(), "network": "none"}).attachments() == []


def test_remote_entry_form() -> None:
    assert parse_remote_entry("web,www=10.3.0.9") == RemoteEndpoint("web", "10.3.0.9", ("www",))
    with pytest.raises(InvalidSpec, match="NAME=ADDRESS"):
        parse_remote_entry("web")


def _network(manager: NetworkManager, name: str, subnet: str) -> None:
    record = Network(name, name * 4, "acme", "overlay", subnet, "", f"br-{name}", internal=True)
    atomic_write_json(manager.dir / name / "network.json", record.to_dict())


def _endpoint(tmp: Path, cid: str, name: str, ip: str, networks: list[str], iface: str) -> dict[str, object]:
    hosts = tmp / f"{cid}.hosts"
    hosts.touch()
    return {
        "name": name, "hostname": cid, "ip": ip, "aliases": [], "hosts": str(hosts), "ports": [],
        "interface": iface, "networks": networks,
    }  # fmt: skip


def test_remote_endpoints_rewrite_every_member_merging_its_other_networks(tmp_path: Path) -> None:
    manager = NetworkManager(EnginePaths(tmp_path / "root"), "hpu-test")
    _network(manager, "front", "10.1.0.0/24")
    _network(manager, "back", "10.2.0.0/24")
    app_front = _endpoint(tmp_path, "app", "app", "10.1.0.5", ["front", "back"], "eth0")
    app_back = {**app_front, "ip": "10.2.0.5", "interface": "eth1"}
    fe = _endpoint(tmp_path, "fe", "fe", "10.1.0.6", ["front"], "eth0")
    db = _endpoint(tmp_path, "db", "db", "10.2.0.6", ["back"], "eth0")
    atomic_write_json(manager.dir / "front" / "endpoints.json", {"app": app_front, "fe": fe})
    atomic_write_json(manager.dir / "back" / "endpoints.json", {"app": app_back, "db": db})
    inode = (tmp_path / "app.hosts").stat().st_ino
    manager.set_remote_endpoints(
        "back",
        [RemoteEndpoint("cache", "10.2.0.200", ("redis",)), RemoteEndpoint("cache", "10.2.0.201")],
    )
    app_hosts = (tmp_path / "app.hosts").read_text()
    assert "10.2.0.200\tcache redis\n" in app_hosts and "10.2.0.201\tcache\n" in app_hosts
    assert "10.1.0.6\tfe\n" in app_hosts  # its other network's names stay
    assert (tmp_path / "app.hosts").stat().st_ino == inode  # in place: the bind mount keeps showing it
    assert "cache" in (tmp_path / "db.hosts").read_text()
    assert (tmp_path / "fe.hosts").read_text() == ""  # front only: untouched, sees no name of back
    manager.set_remote_endpoints("back", {"cache": "10.2.0.202"})  # the dict form replaces the set
    app_hosts = (tmp_path / "app.hosts").read_text()
    assert "10.2.0.202\tcache\n" in app_hosts and "10.2.0.200" not in app_hosts
    assert manager.remote_endpoints("back") == (RemoteEndpoint("cache", "10.2.0.202"),)
    for bad in ([RemoteEndpoint("x", "10.1.0.9")], [RemoteEndpoint("bad name", "10.2.0.9")]):
        with pytest.raises(InvalidSpec):
            manager.set_remote_endpoints("back", bad)
    assert manager.remote_endpoints("back") == (RemoteEndpoint("cache", "10.2.0.202"),)
    with pytest.raises(NotFound):
        manager.set_remote_endpoints("nope", {})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vni": 0}, "VNI 0"),
        ({"vni": 1 << 24}, "VNI"),
        ({"peers": ["not-an-ip"]}, "underlay address 'not-an-ip'"),
        ({"subnet": "10.5.0.0/33"}, "subnet"),
        ({"ip_range": "10.9.0.0/25"}, "--ip-range 10.9.0.0/25 must be a CIDR range inside"),
        ({"name": "bridge"}, "reserved"),
        ({"tenant": "Bad Tenant"}, "tenant"),
    ],
)
def test_ensure_overlay_refuses_bad_settings_before_touching_anything(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    manager = NetworkManager(EnginePaths(tmp_path / "root"), "hpu-test")
    settings: dict[str, object] = {
        "name": "ov", "tenant": "acme", "subnet": "10.5.0.0/24", "vni": 7, "peers": [], **kwargs
    }  # fmt: skip
    name = str(settings.pop("name"))
    with pytest.raises(InvalidSpec, match=message):
        manager.ensure_overlay(name, **settings)  # type: ignore[arg-type]
    assert not (tmp_path / "root" / "networks").exists()
