"""`hpctl host setup` on the real host: idempotent, and afterwards crun runs a container."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.cgroups.layout import detect_cgroup_layout
from engine.paths import EnginePaths

REPO = Path(__file__).resolve().parents[3]
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def hpctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m engine.cli`, what .venv/bin/hpctl runs)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def setup_json(root: Path, instance: str) -> dict[str, Any]:
    proc = hpctl("host", "setup", "--root", str(root), "--instance", instance, "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_setup_is_idempotent_and_crun_runs_a_container(tmp_path: Path) -> None:
    root = tmp_path / "engine"
    instance = f"hpt{secrets.token_hex(3)}"

    first = setup_json(root, instance)
    assert first["dry_run"] is False
    assert first["smoke_seconds"] is not None, "setup runs a smoke container as root"
    assert first["binaries"]["crun"] and first["binaries"]["conmon"] and first["binaries"]["init"]
    assert EnginePaths(root).containers.is_dir()

    second = setup_json(root, instance)
    assert second["changed"] is False, second["actions"]
    assert second["actions"] == []

    # What setup promises about the host.
    layout = detect_cgroup_layout()
    assert layout.controllers_only_on_v2 == frozenset()
    if layout.version == 2:
        assert {"cpu", "memory", "pids"} <= layout.v2_subtree_control
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"

    # And crun can run a trivial container with an absolute cgroupsPath of its own.
    crun = shutil.which("crun", path=SBIN_PATH)
    busybox = shutil.which("busybox", path=SBIN_PATH)
    assert crun and busybox
    bundle = tmp_path / "bundle"
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        (bundle / "rootfs" / d).mkdir(parents=True)
    shutil.copy2(busybox, bundle / "rootfs" / "bin" / "busybox")
    cgroups_path = f"/hostpanel-test-{secrets.token_hex(6)}"
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/busybox", "cat", "/proc/self/cgroup"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "setup-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
            "cgroupsPath": cgroups_path,
        },
    }
    (bundle / "config.json").write_text(json.dumps(config))
    state = tmp_path / "crun-state"
    cid = cgroups_path.lstrip("/")
    try:
        proc = subprocess.run(
            [crun, f"--root={state}", "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert cgroups_path in proc.stdout, proc.stdout
    finally:
        subprocess.run([crun, f"--root={state}", "delete", "--force", cid], capture_output=True, check=False)
        for d in layout.cgroup_dirs(cgroups_path):
            if os.path.isdir(d):
                os.rmdir(d)
    assert not any(os.path.exists(d) for d in layout.cgroup_dirs(cgroups_path))


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "never-created"
    proc = hpctl("host", "setup", "--root", str(root), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["dry_run"] is True and report["changed"] is False
    assert "engine-root" in [a["kind"] for a in report["actions"]]
    assert not root.exists()


def test_host_info_json(tmp_path: Path) -> None:
    proc = hpctl("--root", str(tmp_path), "host", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["cgroup"]["version"] in (1, 2)
    assert info["crun"]["version"].startswith("crun version")
    assert info["engine"]["root"] == str(tmp_path)


@pytest.mark.parametrize("flag", ["--packages"])
def test_packages_only_is_quick_when_installed(flag: str) -> None:
    proc = hpctl("host", "setup", flag)
    assert proc.returncode == 0, proc.stderr
    assert "all present" in proc.stdout
