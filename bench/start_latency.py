"""Start latency of `run --rm /bin/true` (busybox, network none): HostPanel vs raw crun vs peers.

Usage: .venv/bin/python bench/start_latency.py [--runs 50] [--no-peers] [--no-docker]
Each HostPanel run is create + start + wait + remove through the engine's
Python API. The peers are `podman run --rm` and `docker run --rm` (the stock CLI
against a dockerd from Debian's docker.io that this bench starts and stops, see
bench/peers.py), both on the same busybox. The modes run interleaved so all see
the same background load. Prints min/median/p95 in milliseconds and each
median's ratio to raw crun and to HostPanel's.
"""

from __future__ import annotations

import argparse
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
from bench.peers import docker_runner, dockerd_peer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-peers", action="store_true", help="only raw crun and HostPanel")
    parser.add_argument("--no-docker", action="store_true", help="leave dockerd out")
    args = parser.parse_args()
    with (
        scratch_engine() as engine,
        tempfile.TemporaryDirectory() as tmp,
        dockerd_peer(engine, Path(tmp), skip=args.no_peers or args.no_docker) as dockerd,
    ):
        modes: list[tuple[str, Callable[[], object]]] = [
            ("raw crun run", crun_runner(engine, Path(tmp))),
            ("hostpanel (engine API)", lambda: run_true(engine)),
        ]
        ref = None if args.no_peers else podman_image(engine, Path(tmp))
        if ref:
            cmd = ["podman", "run", "--rm", "--network", "none", *PODMAN_ULIMITS, ref, "/bin/true"]
            modes.append(("podman run --rm --network none", lambda: subprocess.run(cmd, check=True)))
        docker_run = dockerd and docker_runner(dockerd, "--network", "none")
        if docker_run:
            modes.append(("docker run --rm --network none", docker_run))
        samples = interleaved(modes, args.runs)
        remove_raw_crun_cgroups(engine)
    print_ratio_table(
        f"start latency of /bin/true, {args.runs} interleaved runs, ms",
        samples,
        ours="hostpanel (engine API)",
    )


if __name__ == "__main__":
    main()
