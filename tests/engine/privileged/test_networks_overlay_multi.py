"""Overlay networks kept by ensure_overlay across two simulated hosts (see test_networks_overlay):
containers on their host's bridge AND the overlay, peers changed in place, remote names (replicas,
aliases) reaching a running container's /etc/hosts without a restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import leaks
from tests.engine.privileged.test_networks_overlay import UNDERLAY, Host, two_hosts

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

SUBNET = "10.243.0.0/24"


def _ensure(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return host.hpctl(
        "network", "ensure-overlay", "ov", "--tenant", "acme", "--subnet", SUBNET, *args, check=check
    )


def _network(host: Host) -> dict[str, object]:
    data: dict[str, object] = json.loads(host.hpctl("network", "inspect", "ov").stdout)[0]
    return data


def _fdb(host: Host, device: str) -> str:
    proc = subprocess.run(
        ["nsenter", f"--net={host.netns}", "bridge", "fdb", "show", "dev", device],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return proc.stdout


def _attachment(host: Host, container: str, network: str) -> str:
    record = json.loads(host.hpctl("inspect", container).stdout)[0]
    return next(a["ip_address"] for a in record["networks"] if a["network"] == network)


def test_ensure_overlay_peers_in_place_and_remote_names_follow_live(tmp_path: Path) -> None:
    with two_hosts(tmp_path) as (a, b):
        _ensure(a, "--vni", "4242", "--ip-range", "10.243.0.0/25")  # no peer yet: every member here
        _ensure(b, "--vni", "4242", "--ip-range", "10.243.0.128/25")
        ov_a = _network(a)
        assert ov_a["peers"] == [] and ov_a["vni"] == 4242
        server = "httpd -f -p 8080 -h /etc"
        a.hpctl(
            "run", "-d", "--name", "srv", "--tenant", "acme", "--network", "bridge", "--network", "ov",
            "busybox", "sh", "-c", server,
        )  # fmt: skip
        b.hpctl(
            "run", "-d", "--name", "cli", "--tenant", "acme", "--network", "bridge", "--network", "ov",
            "busybox", "sleep", "120",
        )  # fmt: skip
        srv_ip, cli_ip = _attachment(a, "srv", "ov"), _attachment(b, "cli", "ov")
        routes = a.sh("srv", "ip route").stdout
        assert routes.count("default") == 1 and "dev eth0" in routes.split("default")[1].splitlines()[0]
        assert f"{SUBNET} dev eth1" in routes
        started = json.loads(b.hpctl("inspect", "cli").stdout)[0]["started_at"]
        b.hpctl("network", "remote", "ov", f"srv,web={srv_ip}")
        a.hpctl("network", "remote", "ov", f"cli={cli_ip}")
        assert f"{srv_ip}\tsrv web" in b.sh("cli", "cat /etc/hosts").stdout
        no_peer = b.sh("cli", "timeout 2 wget -q -O- http://web:8080/hostname")
        assert no_peer.returncode != 0  # the hosts do not know each other yet
        # peers come in place: same bridge and VXLAN device, the running containers untouched
        _ensure(a, "--vni", "4242", "--ip-range", "10.243.0.0/25", "--peer", UNDERLAY["b"])
        _ensure(b, "--vni", "4242", "--ip-range", "10.243.0.128/25", "--peer", UNDERLAY["a"])
        ov_a2 = _network(a)
        assert (ov_a2["bridge"], ov_a2["vxlan"], ov_a2["peers"]) == (
            ov_a["bridge"],
            ov_a["vxlan"],
            [UNDERLAY["b"]],
        )
        assert f"00:00:00:00:00:00 dst {UNDERLAY['b']}" in _fdb(a, str(ov_a["vxlan"]))
        got = b.sh(
            "cli", "for i in 1 2 3 4 5; do timeout 3 wget -q -O- http://web:8080/hostname && break; done"
        )
        assert got.returncode == 0 and got.stdout.strip(), got
        # a second replica of web on host A: both addresses resolve, one line each, still no restart
        a.hpctl(
            "run",
            "-d",
            "--name",
            "srv2",
            "--tenant",
            "acme",
            "--network",
            "ov",
            "busybox",
            "sh",
            "-c",
            server,
        )
        srv2_ip = _attachment(a, "srv2", "ov")
        b.hpctl("network", "remote", "ov", f"srv,web={srv_ip}", f"srv2,web={srv2_ip}")
        hosts = b.sh("cli", "cat /etc/hosts").stdout
        assert f"{srv_ip}\tsrv web\n" in hosts and f"{srv2_ip}\tsrv2 web\n" in hosts
        b.hpctl("network", "remote", "ov", f"srv2,web={srv2_ip}")  # srv moved away: its name goes
        hosts = b.sh("cli", "cat /etc/hosts").stdout
        assert srv_ip not in hosts and f"{srv2_ip}\tsrv2 web" in hosts
        assert json.loads(b.hpctl("inspect", "cli").stdout)[0]["started_at"] == started
        # names of the bridge network never show to a member of the overlay only
        a.hpctl("run", "-d", "--name", "loner", "--tenant", "acme", "busybox", "sleep", "60")
        assert "loner" in a.sh("srv", "cat /etc/hosts").stdout.split()
        assert "loner" not in a.sh("srv2", "cat /etc/hosts").stdout.split()
        # a different VNI or subnet for the same name is a conflict that changes nothing
        bad = _ensure(a, "--vni", "4243", check=False)
        assert bad.returncode != 0 and "VNI" in bad.stderr
        other = a.hpctl(
            "network", "ensure-overlay", "ov", "--tenant", "acme", "--subnet", "10.244.0.0/24",
            "--vni", "4242", check=False,
        )  # fmt: skip
        assert other.returncode != 0 and "subnet" in other.stderr
        # peers go in place too, with what was learnt behind them (B drops A first, as the panel
        # drops both sides: a B still peering A floods its broadcasts there, and A would learn
        # B's addresses again at any moment after the removal)
        _ensure(b, "--vni", "4242", "--ip-range", "10.243.0.128/25")
        _ensure(a, "--vni", "4242", "--ip-range", "10.243.0.0/25")
        assert UNDERLAY["b"] not in _fdb(a, str(ov_a["vxlan"]))
        assert _network(a)["bridge"] == ov_a["bridge"]
    for h in (a, b):
        assert leaks(h.root, h.instance) == []
