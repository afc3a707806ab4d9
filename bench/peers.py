"""The peers the start and density benches compare with: dockerd (Debian's docker.io) and podman.

dockerd is started by the bench on its own roots with ``--bridge=none --iptables=false
--ip-masq=false`` (see bench/docker_api.py) and gets the very busybox HostPanel runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.docker_api import DOCKER, Target, docker, docker_archive, dockerd
from engine.engine import Engine


@contextmanager
def dockerd_peer(engine: Engine, workdir: Path, skip: bool = False) -> Iterator[Target | None]:
    """A dockerd with our busybox loaded, stopped afterwards; None (with a note) when it cannot run."""
    if skip:
        yield None
        return
    with dockerd(workdir, docker_archive(engine, workdir)) as target:
        if not target.up:
            print(f"dockerd not compared: {target.why}", file=sys.stderr)
            yield None
        else:
            yield target


def docker_runner(target: Target, *args: str) -> Callable[[], None] | None:
    """A function running ``docker run --rm ARGS busybox /bin/true`` on ``target``; None if it fails."""
    cmd = [DOCKER, "run", "--rm", *args, "busybox", "/bin/true"]
    env = target.env()

    def run() -> None:
        subprocess.run(cmd, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)

    probe = docker(target, "run", "--rm", *args, "busybox", "/bin/true")
    if probe.returncode != 0:
        print(f"docker run --rm {' '.join(args)} not compared: {probe.stderr.strip()[:200]}", file=sys.stderr)
        return None
    return run
