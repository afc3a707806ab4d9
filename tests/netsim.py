"""Machines beyond the host, simulated in network namespaces (for egress tests).

Each "remote machine" is a namespace joined to the host by a veth and routed
there, running a TCP listener that answers a marker line. Before anything
connects, the kernel's route to its address is checked to go into that
namespace, so no test packet ever leaves the machine.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from engine.engine import Engine
from engine.networks import netlink
from engine.runtime.model import ExecSpec

PORT = 7777
OTHER_PORT = 7778  # a second listener, e.g. a published port beside a control-plane service
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
    """A namespace standing in for a machine beyond the host, with listeners on PORT and OTHER_PORT."""

    address: str
    host_side: str
    marker: str


@contextlib.contextmanager
def remote_machine(tmp_path: Path, host_side: str, address: str, prefixlen: int) -> Iterator[Remote]:
    """A namespace at ``address`` behind a veth (host end ``host_side``), answering on PORT and OTHER_PORT."""
    ns = tmp_path / f"remote-{secrets.token_hex(3)}"
    host_if = f"hpe{secrets.token_hex(4)}"
    marker = f"reached-{address}"
    netlink.create_netns(ns)
    listeners: list[subprocess.Popen[str]] = []
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
        for port in (PORT, OTHER_PORT):
            listener = subprocess.Popen(
                ["nsenter", f"--net={ns}", sys.executable, "-c", LISTENER, str(port), marker],
                stdout=subprocess.PIPE,
                text=True,
            )
            listeners.append(listener)
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield Remote(address=address, host_side=host_side, marker=marker)
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait()
        netlink.delete_link(host_if)
        netlink.delete_netns(ns)


@contextlib.contextmanager
def simulated_world(tmp_path: Path) -> Iterator[dict[str, Remote]]:
    """A LAN host (10/8), a metadata service (169.254.169.254) and an internet host (TEST-NET-3)."""
    with (
        remote_machine(tmp_path, "10.250.77.1", "10.250.77.2", 30) as lan,
        remote_machine(tmp_path, "169.254.169.253", "169.254.169.254", 30) as metadata,
        remote_machine(tmp_path, "203.0.113.1", "203.0.113.2", 30) as internet,
    ):
        yield {"lan": lan, "metadata": metadata, "internet": internet}


def connects(engine: Engine, ref: str, address: str, port: int, marker: str) -> bool:
    """Whether container ``ref`` reaches ``address:port`` and reads ``marker`` there (3 s at most)."""
    proc = engine.exec(
        ref,
        ExecSpec(command=("sh", "-c", f"nc -w 3 {address} {port} </dev/null")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = proc.communicate(timeout=30)
    return marker in out.decode()
