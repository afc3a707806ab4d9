"""An overlay network across two simulated hosts: two network namespaces joined by a veth underlay,
each running its own engine instance (every hpctl command runs inside its host's namespace)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from engine.engine import Engine
from engine.networks import netlink
from tests.engine.conftest import leaks

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

UNDERLAY = {"a": "198.18.0.1", "b": "198.18.0.2"}


class Host:
    """An engine instance whose commands run inside one network namespace."""

    def __init__(self, netns: Path, root: Path, instance: str) -> None:
        self.netns, self.root, self.instance = netns, root, instance

    def hpctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [
            "nsenter", f"--net={self.netns}", sys.executable, "-m", "engine.cli",
            "--root", str(self.root), "--instance", self.instance, *args,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[3])
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}")
        return proc

    def sh(self, container: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.hpctl("exec", container, "sh", "-c", script, check=False)

    def ip_of(self, container: str) -> str:
        address: str = json.loads(self.hpctl("inspect", container).stdout)[0]["ip_address"]
        return address


@contextlib.contextmanager
def two_hosts(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    token = secrets.token_hex(3)
    spaces = {k: tmp_path / f"host-{k}" for k in ("a", "b")}
    hosts = {k: Host(spaces[k], tmp_path / f"root-{k}", f"hpo{token}{k}") for k in ("a", "b")}
    try:
        for ns in spaces.values():
            netlink.create_netns(ns)

        def underlay(ipr: IPRoute) -> None:
            with open(spaces["b"], "rb") as peer:
                ipr.link(
                    "add", ifname="under0", kind="veth", peer={"ifname": "under0", "net_ns_fd": peer.fileno()}
                )
            idx = ipr.link_lookup(ifname="under0")[0]
            ipr.addr("add", index=idx, address=UNDERLAY["a"], prefixlen=24)
            ipr.link("set", index=idx, state="up")

        def other_end(ipr: IPRoute) -> None:
            idx = ipr.link_lookup(ifname="under0")[0]
            ipr.addr("add", index=idx, address=UNDERLAY["b"], prefixlen=24)
            ipr.link("set", index=idx, state="up")

        netlink.in_netns(spaces["a"], underlay)
        netlink.in_netns(spaces["b"], other_end)
        for h in hosts.values():
            Engine(root=h.root, instance=h.instance).images.bootstrap_busybox()
        yield hosts["a"], hosts["b"]
    finally:
        for h in hosts.values():
            if h.root.exists():
                for c in json.loads(h.hpctl("ps", "-a", "--json", check=False).stdout or "[]"):
                    h.hpctl("rm", "-f", c["id"], check=False)
                for n in json.loads(h.hpctl("network", "ls", "--json", check=False).stdout or "[]"):
                    h.hpctl("network", "rm", n["name"], check=False)
        for ns in spaces.values():
            netlink.delete_netns(ns)


def test_overlay_spans_two_hosts_by_name_with_a_working_mtu_and_isolates_tenants(tmp_path: Path) -> None:
    with two_hosts(tmp_path) as (a, b):
        common = ["--tenant", "acme", "--driver", "overlay", "--subnet", "10.240.0.0/24"]
        a.hpctl("network", "create", "ov", *common, "--ip-range", "10.240.0.0/25", "--peer", UNDERLAY["b"])
        b.hpctl("network", "create", "ov", *common, "--ip-range", "10.240.0.128/25", "--peer", UNDERLAY["a"])
        vni_a = json.loads(a.hpctl("network", "inspect", "ov").stdout)[0]["vni"]
        assert vni_a == json.loads(b.hpctl("network", "inspect", "ov").stdout)[0]["vni"]
        server = "dd if=/dev/urandom of=/tmp/big bs=1024 count=3000 2>/dev/null; httpd -f -p 8080 -h /"
        a.hpctl(
            "run", "-d", "--name", "srv", "--tenant", "acme", "--network", "ov", "busybox", "sh", "-c", server
        )
        b.hpctl(
            "run", "-d", "--name", "cli", "--tenant", "acme", "--network", "ov", "busybox", "sleep", "120"
        )
        ip_srv, ip_cli = a.ip_of("srv"), b.ip_of("cli")
        assert ip_srv.startswith("10.240.0.") and int(ip_srv.rsplit(".", 1)[1]) < 128
        assert int(ip_cli.rsplit(".", 1)[1]) >= 128
        a.hpctl("network", "remote", "ov", f"cli={ip_cli}")
        b.hpctl("network", "remote", "ov", f"srv={ip_srv}")
        assert f"{ip_srv}\tsrv" in b.sh("cli", "cat /etc/hosts").stdout
        got = b.sh(
            "cli",
            "for i in 1 2 3 4 5 6; do timeout 3 wget -q -O- http://srv:8080/etc/hostname && break; done",
        )
        assert got.returncode == 0 and got.stdout.strip(), got
        big = b.sh("cli", "timeout 20 wget -q -O /tmp/big http://srv:8080/tmp/big && wc -c < /tmp/big")
        assert big.stdout.strip() == "3072000", big
        assert "mtu 1450" in b.sh("cli", "ip link show eth0").stdout
        # another tenant's overlay network on host B (its own VNI) reaches neither container
        b.hpctl(
            "network", "create", "ov2", "--tenant", "globex", "--driver", "overlay",
            "--subnet", "10.241.0.0/24", "--peer", UNDERLAY["a"],
        )  # fmt: skip
        b.hpctl(
            "run", "-d", "--name", "spy", "--tenant", "globex", "--network", "ov2", "busybox", "sleep", "60"
        )
        for target in (ip_srv, ip_cli):
            probe = b.sh("spy", f"timeout 3 wget -q -O- http://{target}:8080/etc/hostname")
            assert probe.returncode != 0 and not probe.stdout, (target, probe)
        bad = b.hpctl(
            "network", "create", "ov3", "--driver", "overlay", "--subnet", "10.242.0.0/24", check=False
        )
        assert bad.returncode != 0 and "--peer" in bad.stderr
    for h in (a, b):
        assert leaks(h.root, h.instance) == []
