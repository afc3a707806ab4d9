"""`hpctl network ...` and the network options of `hpctl run`, end to end."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.engine import Engine
from engine.images.model import Image

pytestmark = pytest.mark.privileged


def hpctl(engine: Engine, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--root", str(engine.paths.root), "--instance", engine.instance, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_network_commands(engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        hpctl(engine, capsys, "network", "create", "shop", "--tenant", "acme", "--subnet", "10.233.4.0/24")[0]
        == 0
    )
    code, out, _ = hpctl(engine, capsys, "network", "ls")
    assert code == 0 and "shop" in out and "10.233.4.0/24" in out and "acme" in out
    code, out, _ = hpctl(
        engine,
        capsys,
        "run",
        "-d",
        "--name",
        "w",
        "--tenant",
        "acme",
        "--network",
        "shop",
        "--network-alias",
        "www",
        "-p",
        "127.0.0.1:18999:80",
        "busybox",
        "sleep",
        "30",
    )
    assert code == 0, out
    code, out, _ = hpctl(engine, capsys, "network", "inspect", "shop")
    data = json.loads(out)[0]
    [endpoint] = data["containers"].values()
    assert endpoint["name"] == "w" and endpoint["aliases"] == ["www"] and endpoint["ip"] == "10.233.4.2"
    code, _, err = hpctl(engine, capsys, "network", "rm", "shop")
    assert code != 0 and "in use by w" in err
    assert hpctl(engine, capsys, "rm", "-f", "w")[0] == 0
    assert hpctl(engine, capsys, "network", "rm", "shop")[0] == 0


def test_run_defaults_to_the_tenants_bridge(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = hpctl(
        engine, capsys, "run", "--rm", "--tenant", "acme", "busybox", "sh", "-c", "ip -o -4 addr show eth0"
    )
    assert code == 0 and "inet 10." in out
    assert [n.name for n in engine.network_list()] == ["bridge.acme"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["-p", "0:80"], "out of range"),
        (["-p", "70000:80"], "out of range"),
        (["--network", "nosuch"], "no such network"),
        (["--network", "none", "-p", "8080:80"], "cannot publish"),
    ],
)
def test_bad_network_options(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, _, err = hpctl(engine, capsys, "run", "--rm", *args, "busybox", "true")
    assert code != 0 and words in err and err.startswith("hpctl: ")
    assert engine.list(all=True) == []


def test_teardown_removes_exactly_this_instance(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    hpctl(engine, capsys, "run", "-d", "--name", "t1", "-p", "18998:80", "busybox", "sleep", "30")
    code, out, _ = hpctl(engine, capsys, "network", "teardown")
    assert code == 0 and "netns" in out and "link" in out and f"hp_{engine.instance}" in out
    # the records remain; removing the container and network afterwards still works
    code, _, err = hpctl(engine, capsys, "rm", "-f", "t1")
    assert code == 0, err
    # the next container brings the network's bridge and rules back (as after a reboot)
    code, out, err = hpctl(
        engine, capsys, "run", "--rm", "-p", "18998:80", "busybox", "ip", "-o", "-4", "addr"
    )
    assert code == 0 and "eth0" in out, err


def test_tenant_egress_commands(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hpctl(engine, capsys, "tenant", "egress", "show", "acme")
    assert code == 0 and "default (internet only" in out
    code, out, _ = hpctl(
        engine, capsys, "tenant", "egress", "set", "--json", "acme", "10.20.0.0/16", "192.168.1.9"
    )
    assert code == 0 and json.loads(out) == {
        "tenant": "acme",
        "egress_allow": ["10.20.0.0/16", "192.168.1.9/32"],
    }
    code, _, err = hpctl(engine, capsys, "tenant", "egress", "set", "acme", "10.20.0.1/16")
    assert code != 0 and "invalid allow-list entry '10.20.0.1/16'" in err
    code, out, _ = hpctl(engine, capsys, "tenant", "egress", "show", "acme")
    assert "allowed: 10.20.0.0/16" in out and "allowed: 192.168.1.9/32" in out
    assert hpctl(engine, capsys, "tenant", "egress", "set", "acme")[0] == 0
    assert engine.tenant_egress_allow("acme") == ()


def test_network_protect_commands(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = hpctl(
        engine, capsys, "network", "protect", "--json", "198.51.100.7=8080/tcp,53/udp", "10.0.0.5"
    )
    assert code == 0 and json.loads(out) == {"10.0.0.5": [], "198.51.100.7": ["8080/tcp", "53/udp"]}
    code, out, _ = hpctl(engine, capsys, "network", "protected")
    assert "198.51.100.7" in out and "8080/tcp, 53/udp" in out
    code, _, err = hpctl(engine, capsys, "network", "protect", "redis.lan")
    assert code != 0 and "invalid protected host 'redis.lan'" in err
    assert hpctl(engine, capsys, "network", "protect")[0] == 0
    assert engine.egress_protected() == {}
