"""Start latency of a bridged container with one published port: HostPanel vs raw crun, podman, docker.

Usage: .venv/bin/python bench/network_start.py [--runs 30] [--no-podman] [--no-docker]
docker is the stock CLI against a dockerd from Debian's docker.io that this bench
starts (``--bridge=none --iptables=false --ip-masq=false``, see bench/peers.py) and
stops; its bridged row uses a user-defined bridge network (the default one is off).
Each run is create + start + wait + remove of busybox `/bin/true`; prints
min/median/p95 in milliseconds and each median's ratio to raw crun.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PODMAN_ULIMITS,
    crun_runner,
    interleaved,
    podman_image,
    print_ratio_table,
    remove_raw_crun_cgroups,
    run_true,
    scratch_engine,
)
from bench.docker_api import docker
from bench.peers import docker_runner, dockerd_peer
from engine.engine import Engine
from engine.networks.model import PortMapping


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def podman_commands(engine: Engine, tmp: Path, port: int) -> list[tuple[str, list[str]]]:
    """The podman command lines to compare with (busybox loaded from our export), if podman works."""
    ref = podman_image(engine, tmp)
    if ref is None:
        return []
    commands = []
    for label, net in (
        ("podman run --rm --network none", ["--network", "none"]),
        ("podman run --rm -p (bridge)", ["-p", f"{port}:80"]),
    ):
        cmd = ["podman", "run", "--rm", *net, *PODMAN_ULIMITS, ref, "/bin/true"]
        probe = subprocess.run(cmd, capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"{label} skipped: {probe.stderr.strip()[:200]}", file=sys.stderr)
            continue
        commands.append((label, cmd))
    return commands


def network_only(engine: Engine, port: int) -> None:
    """Just the engine's network work for one container: attach (netns, veth, address, rule), detach."""
    manager = engine.networks
    cid = secrets.token_hex(32)
    hosts = engine.paths.tmp / "bench-hosts"
    hosts.touch()
    attachment = manager.attach(
        cid,
        name=f"n{cid[:8]}",
        hostname=cid[:12],
        tenant="default",
        network="bridge",
        ports=(PortMapping(port + 1, 80),),
        hosts_path=hosts,
    )
    manager.detach(cid, attachment.network)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-podman", action="store_true", help="leave podman out (it loads the machine)")
    parser.add_argument("--no-docker", action="store_true", help="leave dockerd out")
    args = parser.parse_args()
    port = free_port()
    with (
        scratch_engine() as engine,
        tempfile.TemporaryDirectory() as tmp,
        dockerd_peer(engine, Path(tmp), skip=args.no_docker) as dockerd,
    ):
        modes: list[tuple[str, Callable[[], object]]] = [
            ("raw crun run (no network)", crun_runner(engine, Path(tmp))),
            ("hostpanel --network none", lambda: run_true(engine)),
            (
                "hostpanel bridge + -p (engine API)",
                lambda: run_true(engine, network="bridge", ports=(PortMapping(port, 80),)),
            ),
            ("  of which network attach + detach", lambda: network_only(engine, port)),
        ]
        modes += [
            (label, lambda c=cmd: subprocess.run(c, check=True, capture_output=True))  # type: ignore[misc]
            for label, cmd in ([] if args.no_podman else podman_commands(engine, Path(tmp), port))
        ]
        if dockerd is not None:
            docker(dockerd, "network", "create", "hpbench")
            for label, net in (
                ("docker run --rm --network none", ["--network", "none"]),
                ("docker run --rm -p (bridge)", ["--network", "hpbench", "-p", f"{port + 2}:80"]),
            ):
                runner = docker_runner(dockerd, *net)
                if runner:
                    modes.append((label, runner))
        samples = interleaved(modes, args.runs)
        remove_raw_crun_cgroups(engine)
        for net in engine.network_list():
            engine.network_remove(net.name)
    print_ratio_table(
        f"start latency of /bin/true (create, start, wait, remove), {args.runs} interleaved runs, ms",
        samples,
        ours="hostpanel bridge + -p (engine API)",
    )


if __name__ == "__main__":
    main()
