"""The operator's Docker API, volumes, networks and system df: the stock docker CLI and docker-py
create, list, inspect and remove them; what the engine cannot do, or must not, is refused with a
clear error and leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from engine.engine import Engine
from engine.errors import VolumeNotFound
from engine.images.model import Image
from engine.networks import netlink
from engine.runtime.model import ContainerSpec
from engine.volumes.spec import MountSpec
from tests.engine.privileged.dockerapi_clients import DockerCLI, operator_api

pytestmark = pytest.mark.privileged


@pytest.fixture()
def api(engine: Engine, tmp_path: Path) -> Iterator[DockerCLI]:
    with operator_api(engine, tmp_path) as cli:
        yield cli


@pytest.fixture()
def client(api: DockerCLI) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{api.socket}", version="auto")
    yield c
    c.close()


def test_volumes_with_the_cli(engine: Engine, busybox: Image, api: DockerCLI) -> None:
    assert api.ok("volume", "create", "--label", "app=web", "--label", "tier=db", "data").strip() == "data"
    api.ok("volume", "create", "-o", "size=16m", "capped")
    assert engine.volume("data").labels == {"app": "web", "tier": "db"}
    assert engine.volume("capped").size == 16 * 1024 * 1024

    assert api.ok("volume", "ls", "-q").split() == ["capped", "data"]
    assert api.ok("volume", "ls", "-q", "-f", "label=app=web").split() == ["data"]
    assert api.ok("volume", "ls", "-q", "-f", "name=cap").split() == ["capped"]
    info = json.loads(api.ok("volume", "inspect", "data"))[0]
    assert info["Name"] == "data" and info["Driver"] == "local"
    assert info["Labels"] == {"app": "web", "tier": "db"}
    assert info["Mountpoint"] == str(engine.volumes.data_dir("data"))

    # in use: rm (even -f) and prune keep it
    mount = MountSpec(kind="volume", source="data", target="/data")
    container = engine.create(ContainerSpec(image="busybox", command=("true",), mounts=(mount,)))
    assert "in use" in api.fails("volume", "rm", "data")
    assert "in use" in api.fails("volume", "rm", "-f", "data")
    assert api.ok("volume", "ls", "-q", "-f", "dangling=true").split() == ["capped"]
    api.ok("volume", "prune", "-a", "-f")
    assert engine.volume("data").name == "data"
    with pytest.raises(VolumeNotFound):
        engine.volume("capped")
    engine.remove(container.id)

    assert api.ok("volume", "rm", "data").strip() == "data"
    assert "no such volume" in api.fails("volume", "rm", "data")
    api.ok("volume", "rm", "-f", "data")  # -f: a missing volume is fine
    assert "no such volume" in api.fails("volume", "inspect", "data")
    assert engine.volume_list() == []


def test_volume_create_refusals_leave_nothing(engine: Engine, api: DockerCLI) -> None:
    assert "volume driver 'nfs' is not supported" in api.fails("volume", "create", "-d", "nfs", "v1")
    for opt in ("device=/etc", "type=none", "o=bind"):
        err = api.fails("volume", "create", "-o", opt, "v2")
        assert f"DriverOpts.{opt.split('=')[0]} is not allowed" in err
    assert "invalid volume name" in api.fails("volume", "create", "../../etc")
    assert engine.volume_list() == []
    anonymous = api.ok("volume", "create").strip()  # no name: a random one, like docker
    assert len(anonymous) == 64 and engine.volume(anonymous).name == anonymous


def test_networks_with_the_cli(engine: Engine, busybox: Image, api: DockerCLI) -> None:
    net_id = api.ok("network", "create", "--label", "team=blue", "--subnet", "10.213.7.0/24", "blue").strip()
    network = engine.network("blue")
    assert network.id == net_id and network.subnet == "10.213.7.0/24" and network.labels == {"team": "blue"}
    assert netlink.link_exists(network.bridge)
    api.ok("network", "create", "--internal", "quiet")
    assert engine.network("quiet").internal
    assert "already exists" in api.fails("network", "create", "blue")

    assert set(api.ok("network", "ls", "--format", "{{.Name}}").split()) == {"blue", "quiet"}
    assert api.ok("network", "ls", "-q", "-f", "label=team=blue").split() == [net_id[:12]]

    container = engine.run(
        ContainerSpec(image="busybox", command=("sleep", "60"), network="blue", name="web")
    )
    info = json.loads(api.ok("network", "inspect", "blue"))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.213.7.0/24", "Gateway": "10.213.7.1"}]
    assert info["Labels"] == {"team": "blue"}
    assert info["Containers"][container.id]["Name"] == "web"
    assert info["Containers"][container.id]["IPv4Address"] == f"{engine.get('web').ip_address}/24"
    assert json.loads(api.ok("network", "inspect", net_id[:12]))[0]["Name"] == "blue"

    # connect and disconnect a running container, live: a second interface, its alias, then gone
    api.ok("network", "connect", "--alias", "hush", "quiet", "web")
    assert [a["network"] for a in engine.get("web").networks] == ["blue", "quiet"]
    shown = json.loads(api.ok("inspect", "web"))[0]["NetworkSettings"]["Networks"]
    assert list(shown) == ["blue", "quiet"] and "hush" in shown["quiet"]["Aliases"]
    assert shown["quiet"]["IPAddress"] == engine.get("web").networks[1]["ip_address"]
    assert "already connected" in api.fails("network", "connect", "quiet", "web")
    assert "static addresses" in api.fails("network", "connect", "--ip", "10.0.0.9", "blue", "web")
    api.ok("network", "disconnect", "quiet", "web")
    assert [a["network"] for a in engine.get("web").networks] == ["blue"]
    assert "not connected" in api.fails("network", "disconnect", "quiet", "web")
    # `docker run` on two networks at once (API 1.44: both in EndpointsConfig)
    two = api.ok(
        "run", "-d", "--network", "blue", "--network", "name=quiet,alias=q", "busybox", "sleep", "60"
    )
    joined = engine.get(two.strip()).networks
    assert [(a["network"], a["aliases"]) for a in joined] == [("blue", []), ("quiet", ["q"])]
    engine.remove(two.strip(), force=True)

    assert "in use" in api.fails("network", "rm", "blue")
    api.ok("network", "prune", "-f")
    assert [n.name for n in engine.network_list()] == ["blue"]
    engine.remove(container.id, force=True)
    api.ok("network", "rm", "blue")
    assert not netlink.link_exists(network.bridge)
    assert "not found" in api.fails("network", "inspect", "blue")


def test_overlay_network_with_the_cli(engine: Engine, api: DockerCLI) -> None:
    api.ok(
        "network", "create", "-d", "overlay", "--subnet", "10.216.0.0/16", "--ip-range", "10.216.4.0/24",
        "-o", "hostpanel.peers=192.0.2.10,192.0.2.11", "-o", "hostpanel.vni=4242", "span",
    )  # fmt: skip
    network = engine.network("span")
    assert (network.driver, network.vni, network.peers) == ("overlay", 4242, ["192.0.2.10", "192.0.2.11"])
    assert network.ip_range == "10.216.4.0/24" and network.internal
    info = json.loads(api.ok("network", "inspect", "span"))[0]
    assert info["Options"]["hostpanel.peers"] == "192.0.2.10,192.0.2.11"
    assert info["IPAM"]["Config"] == [{"Subnet": "10.216.0.0/16", "IPRange": "10.216.4.0/24"}]
    assert "needs -o hostpanel.peers=" in api.fails(
        "network", "create", "-d", "overlay", "--subnet", "10.217.0.0/16", "x"
    )
    api.ok("network", "rm", "span")
    assert engine.network_list() == []


def test_network_create_refusals_leave_nothing(engine: Engine, api: DockerCLI) -> None:
    assert "not supported" in api.fails("network", "create", "-d", "macvlan", "n1")
    assert "Options.com.docker.network.bridge.name is not allowed" in api.fails(
        "network", "create", "-o", "com.docker.network.bridge.name=eth0", "n2"
    )
    assert "EnableIPv6" in api.fails("network", "create", "--ipv6", "n3")
    assert "gateway" in api.fails(
        "network", "create", "--subnet", "10.214.0.0/24", "--gateway", "10.214.0.9", "n4"
    )
    assert "invalid subnet" in api.fails("network", "create", "--subnet", "banana", "n5")
    assert engine.network_list() == []


def test_system_df(engine: Engine, busybox: Image, api: DockerCLI) -> None:
    engine.volume_create("dfvol")
    mount = MountSpec(kind="volume", source="dfvol", target="/data")
    container = engine.run(
        ContainerSpec(
            image="busybox", command=("sh", "-c", "head -c 300000 /dev/zero > /data/f"), mounts=(mount,)
        )
    )
    engine.wait(container.id, timeout=60)
    data = json.loads(api.ok("system", "df", "--format", "{{json .}}").splitlines()[0])
    assert data["Type"] == "Images" and data["TotalCount"] == "1" and data["Active"] == "1"
    verbose = api.ok("system", "df", "-v")
    assert "dfvol" in verbose and busybox.short_id in verbose and container.short_id in verbose
    engine.remove(container.id)


def test_docker_py_volumes_and_networks(engine: Engine, client: docker.DockerClient) -> None:
    volume = client.volumes.create("pyvol", labels={"k": "v"})
    assert volume.attrs["Labels"] == {"k": "v"}
    assert [v.name for v in client.volumes.list(filters={"label": "k=v"})] == ["pyvol"]
    assert client.volumes.get("pyvol").attrs["Mountpoint"] == str(engine.volumes.data_dir("pyvol"))
    with pytest.raises(docker.errors.APIError) as refused:
        client.volumes.create("hostdev", driver_opts={"device": "/dev/sda"})
    assert refused.value.status_code == 403
    volume.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvol")

    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.215.3.0/24")])
    network = client.networks.create("pynet", labels={"k": "v"}, ipam=ipam, check_duplicate=True)
    assert engine.network("pynet").subnet == "10.215.3.0/24"
    assert client.networks.get(network.id).attrs["Labels"] == {"k": "v"}
    assert [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"]
    network.remove()
    assert engine.network_list() == []
    assert client.networks.prune() == {"NetworksDeleted": None}

    client.volumes.create("anon", labels={"com.docker.volume.anonymous": ""})
    client.volumes.create("named")
    assert client.volumes.prune()["VolumesDeleted"] == ["anon"]  # only anonymous ones without all=true
    assert client.volumes.prune(filters={"all": "true"})["VolumesDeleted"] == ["named"]
    df = client.df()
    assert df["Volumes"] == [] and df["BuildCache"] == [] and isinstance(df["LayersSize"], int)
