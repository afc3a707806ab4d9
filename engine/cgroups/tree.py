"""Where the engine's cgroups live and how empty ones are removed.

Layout (absolute ``cgroupsPath`` in each bundle, as crun wants it):
``/<instance>/tenants/<tenant>/<container-id>``. crun creates and deletes the
container's own cgroup; the engine removes the tenant and instance levels
once they are empty.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path


def container_cgroup(instance: str, tenant: str, cid: str) -> str:
    """The absolute cgroupsPath of a container."""
    return f"/{instance}/tenants/{tenant}/{cid}"


def tenant_cgroup(instance: str, tenant: str) -> str:
    """The cgroup path of a tenant, parent of all its containers."""
    return f"/{instance}/tenants/{tenant}"


def remove_if_empty(roots: Iterable[Path], relative: str, *, stop_at: str = "") -> list[Path]:
    """rmdir ``relative`` and then its parents below ``stop_at`` in every hierarchy root.

    A directory that still holds processes or children stays (EBUSY/ENOTEMPTY);
    returns the directories removed.
    """
    removed: list[Path] = []
    parts = relative.strip("/").split("/")
    floor = len(stop_at.strip("/").split("/")) if stop_at.strip("/") else 0
    for root in roots:
        for depth in range(len(parts), floor, -1):
            path = root.joinpath(*parts[:depth])
            try:
                os.rmdir(path)
                removed.append(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY, errno.EEXIST):
                    break
                raise
    return removed


def existing(roots: Iterable[Path], relative: str) -> list[Path]:
    """The hierarchies in which ``relative`` exists (for leak checks)."""
    result = []
    for root in roots:
        path = root / relative.strip("/")
        with contextlib.suppress(OSError):
            if path.is_dir():
                result.append(path)
    return result
