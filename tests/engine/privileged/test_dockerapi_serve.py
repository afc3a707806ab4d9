"""`hpctl docker serve` (what `make run` starts): the socket it makes, what it shows, how it stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec
from tests.engine.dockerapi_support import DOCKER

REPO = Path(__file__).resolve().parents[3]


def test_serve_shows_the_engine_s_containers_and_stops_cleanly_on_sigterm(
    engine: Engine, busybox: Image
) -> None:
    engine.create(ContainerSpec(image="busybox", command=("true",), name="made-by-hpctl"))
    directory = Path(tempfile.mkdtemp(prefix="hps"))
    sock = directory / "docker.sock"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOSTPANEL_ROOT": str(engine.paths.root),
        "HOSTPANEL_INSTANCE": engine.instance,
        "HOSTPANEL_DOCKER_SOCKET": str(sock),  # make run's override of /run/hostpanel/docker.sock
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "docker", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.is_socket():
            assert daemon.poll() is None, daemon.stdout.read() if daemon.stdout else ""
            assert time.monotonic() < deadline, "the socket never appeared"
            time.sleep(0.05)
        assert sock.stat().st_mode & 0o777 == 0o600
        client_env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(directory)}
        listing = subprocess.run(
            [DOCKER, "ps", "-a", "--format", "{{.Names}}"],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.split() == ["made-by-hpctl"]
        daemon.send_signal(signal.SIGTERM)  # what `make stop` sends
        assert daemon.wait(timeout=30) == 0
        assert not sock.exists()
        out = daemon.stdout.read() if daemon.stdout else ""
        assert f"DOCKER_HOST=unix://{sock}" in out
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()
        shutil.rmtree(directory, ignore_errors=True)
