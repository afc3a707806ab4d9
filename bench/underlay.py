"""Simulated hosts on one machine (issue 15): a network namespace each, on a bridge (the underlay).

``underlay()`` makes a bridge in this namespace (its address is the panel's, where Redis and the
HTTPS front listen) and a namespace per host plugged into it by a veth, on a free /24 of
198.19.0.0/16. ``JoinedHost`` is a host enrolled with the join command whose agent (no
database, as every agent) runs inside such a namespace (``nsenter --net``: only the network is its
own; the engine's mounts and cgroups are this machine's) with an engine of its own; its base
``NetnsAgent`` holds what is not about enrollment (its engine's CLI, log, clean-up). Shared by
bench/cluster.py and the end-to-end tests (tests/hostpanel/e2e/test_e2e_cluster.py and others).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.enroll import join_args, joined_agent_args, joined_env
from bench.panel_stack import REPO
from engine.engine import Engine
from engine.images.bootstrap import unmount_below
from engine.networks import netlink


@dataclass
class Underlay:
    """The bridge of this namespace (the panel's address) and each host's namespace and address."""

    bridge: str
    panel_ip: str
    spaces: dict[str, Path]
    addresses: dict[str, str]
    links: dict[str, str]  # the host end of each host's veth, on the bridge


def _free_subnet() -> int:
    """N of a 198.19.N.0/24 that no address of this namespace is in (other tests use the range)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        taken = {ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=2)}
    used = {ip.packed[2] for ip in taken if ip in ipaddress.ip_network("198.19.0.0/16")}
    return random.choice([n for n in range(10, 251) if n not in used])


@contextlib.contextmanager
def underlay(directory: Path, hosts: tuple[str, ...]) -> Iterator[Underlay]:
    """A bridge with the panel's address and a namespace per host plugged into it (a /24); the
    namespaces' files are ``directory/ns-<host>``. Links and namespaces are removed afterwards."""
    n, token = _free_subnet(), secrets.token_hex(2)
    made = Underlay(
        bridge=f"hpk{token}",
        panel_ip=f"198.19.{n}.1",
        spaces={h: directory / f"ns-{h}" for h in hosts},
        addresses={h: f"198.19.{n}.{11 + i}" for i, h in enumerate(hosts)},
        links={h: f"hpk{token}{h}"[:15] for h in hosts},
    )
    try:
        netlink.create_bridge(made.bridge, made.panel_ip, 24, 1500)
        for h in hosts:
            plug = netlink.VethPlug(made.links[h], made.bridge, "eth0", made.addresses[h], 24, None, 1500)
            netlink.create_netns_with_veth(made.spaces[h], plug)
        yield made
    finally:
        for link in [*made.links.values(), made.bridge]:
            netlink.delete_link(link)
        for ns in made.spaces.values():
            if ns.exists():
                netlink.delete_netns(ns)


def set_link(name: str, up: bool) -> None:
    """Set link ``name`` of this namespace up or down (a host's veth end down: a cut cable)."""
    subprocess.run(["ip", "link", "set", name, "up" if up else "down"], check=True, capture_output=True)


@dataclass
class NetnsAgent:
    """A host agent's process inside its own network namespace, with its engine (started by
    :class:`JoinedHost`: every agent is enrolled)."""

    name: str
    netns: Path
    underlay: str
    root: Path
    instance: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def hpctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``hpctl`` on this host's engine, inside its namespace."""
        cmd = [
            "nsenter", f"--net={self.netns}", sys.executable, "-m", "engine.cli",
            "--root", str(self.root), "--instance", self.instance, *args,
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)

    def sh(self, container: str, script: str) -> str:
        """What ``sh -c script`` in ``container`` prints (output and errors)."""
        proc = self.hpctl("exec", container, "sh", "-c", script)
        return proc.stdout + proc.stderr

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the agent's log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def clean(self) -> None:
        """Remove what the engine holds (inside the namespace: its links live there), then any
        mount left below its root."""
        script = (
            "from engine.engine import Engine\n"
            f"e = Engine(root={str(self.root)!r}, instance={self.instance!r})\n"
            "for c in e.list(all=True): e.remove(c.id, force=True)\n"
            "for n in e.network_list(): e.network_remove(n.name)\n"
            "for v in e.volume_list(): e.volume_remove(v.name, force=True)\n"
        )
        subprocess.run(
            ["nsenter", f"--net={self.netns}", sys.executable, "-c", script],
            cwd=REPO,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            capture_output=True,
            timeout=120,
        )
        unmount_below(self.root)


@dataclass(kw_only=True)
class JoinedHost(NetnsAgent):
    """A host enrolled with the join command: its agent has no database, a state directory and an
    environment of its own (:func:`bench.enroll.joined_env`); ``link`` is its veth's end on the
    bridge (down: a cut cable); ``extra_args`` go after the joined agent's arguments."""

    state: Path
    env: dict[str, str]
    link: str
    extra_args: list[str] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        """Its engine, seen from this namespace (its containers, their states)."""
        return Engine(root=self.root, instance=self.instance)

    def agent_args(self) -> list[str]:
        """``manage.py hostagent`` arguments: its engine, its own address, quick beats and reconciles."""
        args = joined_agent_args(self.root, self.instance)
        args[args.index("--address") + 1] = self.underlay
        return [*args, *self.extra_args]

    def popen(self, command: list[str]) -> None:
        """Run ``command`` in its namespace and environment as its agent process."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={self.netns}", *command],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def restart(self) -> None:
        """Start the agent again from its state directory, as its systemd unit does."""
        self.popen(
            [sys.executable, "manage.py", "hostagent", "--state-dir", str(self.state), *self.agent_args()]
        )

    def kill(self) -> None:
        """SIGKILL its agent (its containers keep running) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def running(self, prefix: str) -> list[str]:
        """Names of its running containers that start with ``prefix``."""
        return sorted(c.name for c in self.engine.list() if c.name.startswith(prefix) and c.is_running)

    def token(self) -> str:
        """The API token the join wrote to its credentials."""
        return str(json.loads((self.state / "credentials.json").read_text())["api_token"])


def join_host(
    net: Underlay,
    name: str,
    directory: Path,
    panel: tuple[str, Path, dict[str, str]],
    token: str,
    extra_args: tuple[str, ...] = (),
) -> JoinedHost:
    """Run the join command for host ``name`` (``token`` from ``manage.py host add``) in its
    namespace of ``net``, against ``panel`` (its HTTPS URL, CA file and environment); the agent it
    execs keeps running. Engine, state, var directory and log are ``directory/*-<name>``."""
    url, ca_file, panel_env = panel
    state = directory / f"state-{name}"
    host = JoinedHost(
        name,
        net.spaces[name],
        net.addresses[name],
        directory / f"engine-{name}",
        f"hpk-{secrets.token_hex(3)}",
        directory / f"agent-{name}.log",
        state=state,
        env=joined_env(panel_env, directory / f"var-{name}", state),
        link=net.links[name],
        extra_args=list(extra_args),
    )
    host.engine.images.bootstrap_busybox()
    host.popen(join_args(url, token, ca_file, state, "--foreground", "--", *host.agent_args()))
    return host
