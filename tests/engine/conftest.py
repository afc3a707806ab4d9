"""Fixtures for engine tests: a real engine on a temporary root, leak checks, and helpers that
simulate failures (an interrupted create, a config crun refuses) or serve HTTP from a thread."""

from __future__ import annotations

import os
import re
import secrets
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import pytest

from engine.cgroups.layout import detect_cgroup_layout
from engine.engine import Engine
from engine.errors import VolumeNotFound
from engine.images.model import Image
from engine.networks import firewall, netlink
from engine.networks.manager import link_prefixes
from engine.runtime.model import ContainerSpec
from engine.volumes.disk import loop_devices_backed_by

ServerT = TypeVar("ServerT", bound=socketserver.BaseServer)


def hpctl_argv(engine: Engine, *args: str) -> list[str]:
    """The command line of `hpctl` on ``engine``'s root and instance, then ``args``."""
    return [
        sys.executable,
        "-m",
        "engine.cli",
        "--root",
        str(engine.paths.root),
        "--instance",
        engine.instance,
        *args,
    ]


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
    locks = root / "run" / "locks"
    if locks.exists():  # a container's lock outlives it only if a create or remove forgot it
        found += [f"container lock {p.name}" for p in locks.iterdir() if re.fullmatch("[0-9a-f]{64}", p.name)]
    found += [f"loop device {dev}" for dev in loop_devices_backed_by(root, settle=2.0)]
    volumes = root / "volumes"
    if volumes.exists():  # half-made (.new-*) or half-removed (.gone-*) volumes
        found += [f"volume dir {p.name}" for p in volumes.iterdir() if p.name.startswith(".")]
    return found + trash_leaks(root) + network_leaks(root, instance)


def trash_leaks(root: Path, settle: float = 30.0) -> list[str]:
    """Entries left in ``root``'s trash once its deleting settled (engine.runtime.trash).

    A removal returns before its directory is deleted on a worker thread (of this process, or
    of a daemon the test started), so this waits up to ``settle`` seconds for the trash to empty.
    """
    trash = root / "trash"
    deadline = time.monotonic() + settle
    while True:
        left = sorted(os.listdir(trash)) if trash.exists() else []
        if not left or time.monotonic() >= deadline:
            return [f"trash entry {name}" for name in left]
        time.sleep(0.05)


def network_leaks(root: Path, instance: str) -> list[str]:
    """Network namespaces, links, nft tables and address allocations of the instance still present."""
    found: list[str] = []
    netns = root / "run" / "netns"
    if netns.exists():
        found += [f"netns {p.name}" for p in netns.iterdir()]
    for _attempt in range(100):  # a destroyed namespace's veth is removed by the kernel in the background
        links = [name for prefix in link_prefixes(instance) for name in netlink.links_with_prefix(prefix)]
        if not links:
            break
        time.sleep(0.02)
    found += [f"link {name}" for name in links]
    found += [f"nft {t}" for t in firewall.instance_tables_present(instance)]
    networks = root / "networks"
    if networks.exists():
        for endpoints in networks.glob("*/endpoints.json"):
            if endpoints.read_text().strip() not in ("", "{}"):
                found.append(f"address allocation in {endpoints}")
    return found


def create_interrupted(engine: Engine, spec: ContainerSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """``engine.create(spec)`` dying as a killed process would: after the name is reserved and the
    rootfs mounted, before the record exists, and with no clean-up code run."""
    import engine.runtime.containers as containers_module

    class Crash(BaseException):
        """Stands in for the process dying mid-create (no cleanup code runs for it)."""

    def die(*_args: object, **_kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(containers_module, "build_config", die)
    monkeypatch.setattr(containers_module.ExitStack, "__exit__", lambda *a: False)  # no undo, as in a crash
    with pytest.raises(Crash):
        engine.create(spec)
    monkeypatch.undo()


@contextmanager
def serving(server: ServerT) -> Iterator[ServerT]:
    """Run ``server`` in a thread (an HTTP stand-in for a registry); shut down and closed afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def break_crun_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every container config carry a mount crun refuses (creates then fail inside crun)."""
    import engine.runtime.containers as containers_module

    real_build = containers_module.build_config

    def broken_config(spec: object) -> dict[str, object]:
        config = real_build(spec)  # type: ignore[arg-type]
        config["mounts"].append(  # type: ignore[attr-defined]
            {"destination": "/broken", "type": "no-such-fs", "source": "none", "options": []}
        )
        return config

    monkeypatch.setattr(containers_module, "build_config", broken_config)


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
    tear_down(eng)


def tear_down(eng: Engine, *, volumes: bool = False) -> None:
    """Remove every container and network of ``eng`` (and its volumes), then fail on any leak."""
    for container in eng.list(all=True):
        eng.remove(container.id, force=True)
    for network in eng.network_list():
        eng.network_remove(network.name)
    if volumes:
        for volume in eng.volume_list():
            with suppress(VolumeNotFound):  # removed meanwhile (a client's `down -v`)
                eng.volume_remove(volume.name)
    assert eng.containers.store.trash.wait(timeout=60), "the trash worker did not finish in 60 s"
    left = leaks(eng.paths.root, eng.instance)
    assert not left, f"the engine left things behind: {left}"


@pytest.fixture()
def busybox(engine: Engine) -> Image:
    """The busybox base image, bootstrapped from the host's busybox-static."""
    return engine.images.bootstrap_busybox()
