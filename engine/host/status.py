"""Read-only reports about the host and the engine root (no privileges needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.cgroups.layout import detect_cgroup_layout, host_path
from engine.errors import HostNotReady
from engine.host.checks import INIT_CANDIDATES, find_binary, tool_version
from engine.host.provision import IP_FORWARD, engine_root_missing
from engine.paths import EnginePaths


@dataclass(frozen=True)
class EngineRootStatus:
    """Whether an engine root exists with its full directory layout."""

    root: Path
    ready: bool
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (the panel's /healthz embeds it)."""
        return {"root": str(self.root), "ready": self.ready, "missing": list(self.missing)}


def engine_root_status(root: Path) -> EngineRootStatus:
    """Check the engine root's layout by stat calls only; never creates anything."""
    paths = EnginePaths(Path(root))
    missing = tuple(str(p.relative_to(paths.root)) for p in engine_root_missing(paths))
    return EngineRootStatus(root=paths.root, ready=not missing, missing=missing)


def host_info(root: Path, instance: str) -> dict[str, Any]:
    """What `hpctl host info` prints: kernel, cgroups, runtime versions, engine root.

    Reads only; works without root (the cgroup layout may then be partial).
    """
    uname = os.uname()
    try:
        cgroup: dict[str, Any] | None = detect_cgroup_layout().to_dict()
        cgroup_error = None
    except HostNotReady as exc:
        cgroup, cgroup_error = None, str(exc)
    try:
        ip_forward: str | None = host_path(Path("/"), IP_FORWARD).read_text().strip()
    except OSError:
        ip_forward = None
    init = next((p for p in (find_binary(n) for n in INIT_CANDIDATES) if p), None)
    return {
        "kernel": uname.release,
        "machine": uname.machine,
        "hostname": uname.nodename,
        "cgroup": cgroup,
        "cgroup_error": cgroup_error,
        "crun": {"path": find_binary("crun"), "version": tool_version("crun")},
        "conmon": {"path": find_binary("conmon"), "version": tool_version("conmon")},
        "init": init,
        "ip_forward": ip_forward == "1",
        "engine": {**engine_root_status(root).to_dict(), "instance": instance},
    }
