"""Fixtures for engine tests: a real engine on a temporary root, and leak checks."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cgroups.layout import detect_cgroup_layout
from engine.engine import Engine
from engine.images.model import Image


def leaks(root: Path, instance: str) -> list[str]:
    """Everything an engine on ``root``/``instance`` left on the host (empty when clean)."""
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mount_point = line.split()[4]
            if mount_point.startswith(str(root)):
                found.append(f"mount {mount_point}")
    for directory in detect_cgroup_layout().cgroup_dirs(f"/{instance}"):
        if Path(directory).exists():
            found.append(f"cgroup {directory}")
    state = root / "run" / "crun"
    if state.exists():
        found += [f"crun state {p.name}" for p in state.iterdir()]
    out = subprocess.run(["pgrep", "-af", "conmon"], capture_output=True, text=True).stdout
    found += [f"conmon {line}" for line in out.splitlines() if str(root) in line]
    containers = root / "containers"
    if containers.exists():
        found += [f"container dir {p.name}" for p in containers.iterdir()]
    return found


@pytest.fixture()
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A real engine on a fresh root with a unique instance; fails the test if it leaks."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("privileged engine tests need root; CI runs as root, so this is a broken CI setup")
        pytest.skip("needs root (real containers through crun): run as root, as CI does")
    root = tmp_path_factory.mktemp("hproot")
    instance = f"hpt-{secrets.token_hex(4)}"
    eng = Engine(root=root, instance=instance)
    yield eng
    for container in eng.list(all=True):
        eng.remove(container.id, force=True)
    left = leaks(root, instance)
    assert not left, f"the engine left things behind: {left}"


@pytest.fixture()
def busybox(engine: Engine) -> Image:
    """The busybox base image, bootstrapped from the host's busybox-static."""
    return engine.images.bootstrap_busybox()
