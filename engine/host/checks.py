"""Checks that the host can run containers: the binaries exist and crun starts one.

These change nothing on the host except a throw-away bundle below the
engine's tmp directory and the smoke container's cgroups, both removed again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.cgroups.layout import CgroupLayout, detect_cgroup_layout
from engine.errors import HostNotReady
from engine.paths import EnginePaths

SEARCH_PATH = os.pathsep.join(
    [
        os.environ.get("PATH", ""),
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
)
INIT_CANDIDATES = ("catatonit", "tini")


def find_binary(name: str) -> str | None:
    """Absolute path of the executable ``name`` (PATH plus the sbin dirs), or None."""
    return shutil.which(name, path=SEARCH_PATH)


@dataclass(frozen=True)
class HostBinaries:
    """Where the runtime's helper programs live on this host."""

    crun: str
    conmon: str
    init: str
    busybox: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {"crun": self.crun, "conmon": self.conmon, "init": self.init, "busybox": self.busybox}


def check_binaries() -> HostBinaries:
    """Find crun, conmon and an init (catatonit or tini).

    Raises HostNotReady naming what is missing and how to get it.
    """
    crun = find_binary("crun")
    conmon = find_binary("conmon")
    init = next((p for p in (find_binary(n) for n in INIT_CANDIDATES) if p), None)
    missing = [n for n, p in (("crun", crun), ("conmon", conmon), ("catatonit or tini", init)) if p is None]
    if missing or crun is None or conmon is None or init is None:
        raise HostNotReady(
            f"missing {', '.join(missing)}; run `make install` (or `hpctl host setup`) as root"
        )
    return HostBinaries(crun=crun, conmon=conmon, init=init, busybox=find_binary("busybox"))


def tool_version(binary: str) -> str | None:
    """First line of ``binary --version`` (e.g. 'crun version 1.8.1'), or None if it fails."""
    path = find_binary(binary)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else None


def smoke_bundle_config(
    args: list[str], cgroups_path: str, hostname: str = "hostpanel-smoke"
) -> dict[str, Any]:
    """A minimal OCI runtime config: busybox on a read-only rootfs, no capabilities."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=1024k"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
            "cgroupsPath": cgroups_path,
        },
    }


def remove_cgroup_dirs(layout: CgroupLayout, cgroups_path: str) -> None:
    """Remove the (empty) directories of ``cgroups_path`` in every hierarchy; ignore absent ones."""
    for d in layout.cgroup_dirs(cgroups_path):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(d)


def crun_smoke_test(paths: EnginePaths, instance: str, layout: CgroupLayout | None = None) -> float:
    """Run ``busybox true`` in a throw-away crun container; return how long it took (s).

    Needs root, crun and a static busybox. Cleans up its bundle, state and
    cgroups. Raises HostNotReady with crun's complaint when it fails (e.g.
    "cgroups in hybrid mode not supported": run `hpctl host setup`).
    """
    crun = find_binary("crun")
    busybox = find_binary("busybox")
    if crun is None or busybox is None:
        raise HostNotReady("crun and busybox-static are needed for the smoke test; run `make install`")
    layout = layout or detect_cgroup_layout()
    paths.tmp.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    cid = f"{instance}-smoke-{token}"
    cgroups_path = f"/{instance}-smoke-{token}"
    with tempfile.TemporaryDirectory(dir=paths.tmp, prefix="smoke-") as tmp:
        bundle = Path(tmp) / "bundle"
        rootfs = bundle / "rootfs"
        for d in ("bin", "proc", "dev", "sys", "tmp"):
            (rootfs / d).mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        config = smoke_bundle_config(["/bin/busybox", "true"], cgroups_path)
        (bundle / "config.json").write_text(json.dumps(config))
        state = Path(tmp) / "state"
        base = [crun, f"--root={state}"]
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [*base, "run", "--bundle", str(bundle), cid],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HostNotReady("crun smoke container did not finish within 60 s") from exc
        finally:
            subprocess.run([*base, "delete", "--force", cid], capture_output=True, check=False)
            remove_cgroup_dirs(layout, cgroups_path)
        elapsed = time.monotonic() - start
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}"
        raise HostNotReady(f"crun cannot run a container on this host: {detail}; run `hpctl host setup`")
    return elapsed
