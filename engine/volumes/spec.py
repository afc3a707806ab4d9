"""What a container asks to have mounted, and the pure checks on it (no I/O but ``exists``).

Three kinds of mount:

- ``volume``: a named volume of the container's tenant (created on first use);
- ``tmpfs``: a memory file system; a size is required;
- ``bind``: a host path. Operators only: the engine refuses it unless the
  caller sets ``ContainerSpec.allow_host_paths`` (the CLI does, the panel
  never does).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import InvalidSpec

KINDS = ("volume", "bind", "tmpfs")
_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# Paths a mount may not cover: the runtime owns them (and covering /proc or /sys would
# hide the masked and read-only paths that keep a container away from the host).
FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev")
# What the runtime itself places in a container (the secrets tmpfs, the network's hosts and
# resolv.conf files): a volume there would hide it or fail to mount (a directory over a file).
RUNTIME_TARGETS = ("/run/secrets", "/etc/hosts", "/etc/resolv.conf")
MIB = 1024 * 1024
MIN_VOLUME_SIZE = 4 * MIB
MAX_VOLUME_SIZE = 16 * 1024**4  # ext4 with 4k blocks


def validate_volume_name(name: str) -> str:
    """Return ``name`` if it is a valid volume name, else raise InvalidSpec.

    Letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, at
    most 128 characters; ``/`` and ``..`` are refused so a name never leaves
    the volumes directory.
    """
    if not isinstance(name, str) or not _VOLUME_NAME_RE.match(name) or ".." in name:
        raise InvalidSpec(
            f"invalid volume name {name!r}: use letters, digits, '_', '.' or '-' (no '/' or '..'), "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


def validate_volume_size(size: int, fs_total: int | None = None) -> int:
    """Return ``size`` (bytes) if it is a sane volume size, else raise InvalidSpec.

    A size is at least 4 MiB, at most 16 TiB, and no larger than the host file
    system that holds the volumes (``fs_total``, when known).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_VOLUME_SIZE:
        raise InvalidSpec(f"invalid volume size {size!r}: a volume needs at least 4m")
    if size > MAX_VOLUME_SIZE:
        raise InvalidSpec(f"invalid volume size {size}: at most 16 TiB (16384g)")
    if fs_total is not None and size > fs_total:
        raise InvalidSpec(
            f"invalid volume size {size}: larger than the host file system that holds volumes "
            f"({fs_total // MIB}m in total)"
        )
    return size


def host_memory_bytes() -> int | None:
    """MemTotal of this host in bytes, or None when /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class MountSpec:
    """One mount a container asks for.

    ``source`` is the volume name (``volume``), the host path (``bind``) or
    empty (``tmpfs``). ``size`` and ``mode`` apply to tmpfs only.
    """

    kind: str
    target: str
    source: str = ""
    read_only: bool = False
    size: int = 0
    mode: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what a container record keeps)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MountSpec:
        """Rebuild a mount from :meth:`to_dict` output, ignoring unknown keys."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def validate_target(target: str) -> str:
    """Return the container path ``target`` if it can be a mount point, else raise InvalidSpec."""
    if not isinstance(target, str) or not target.startswith("/") or "\x00" in target:
        raise InvalidSpec(f"invalid mount target {target!r}: use an absolute path inside the container")
    if ".." in target.split("/"):
        raise InvalidSpec(f"invalid mount target {target!r}: '..' is not allowed")
    norm = "/" + posixpath.normpath(target).lstrip("/")  # normpath keeps a leading "//"
    if norm == "/":
        raise InvalidSpec("invalid mount target '/': cannot mount over the container's root")
    for forbidden in FORBIDDEN_TARGETS:
        if norm == forbidden or norm.startswith(forbidden + "/"):
            raise InvalidSpec(f"invalid mount target {target!r}: {forbidden} belongs to the runtime")
    return norm


def validate_volume_target(target: str) -> str:
    """Return the normalized ``target`` if a named volume can be mounted there, else raise InvalidSpec.

    The :func:`validate_target` rules plus the runtime's own paths (:data:`RUNTIME_TARGETS`).
    Pure: the panel checks a tenant's volume paths with it before accepting them.
    """
    norm = validate_target(target)
    for owned in RUNTIME_TARGETS:
        if norm == owned or norm.startswith(owned + "/"):
            raise InvalidSpec(f"invalid mount target {target!r}: {owned} belongs to the runtime")
    return norm


def validate_mounts(
    mounts: Iterable[MountSpec], *, allow_host_paths: bool, max_tmpfs: int | None = None
) -> tuple[MountSpec, ...]:
    """Check every mount of a container spec; return them with normalized targets.

    Raises InvalidSpec for an unknown kind, a bad target, two mounts on one
    target, a bad volume name, a tmpfs without a size (or larger than
    ``max_tmpfs``, the host's memory by default) or a bad mode, a relative or
    missing bind source, and a bind mount when ``allow_host_paths`` is false
    (host paths are for operators only).
    """
    result: list[MountSpec] = []
    seen: set[str] = set()
    limit = max_tmpfs if max_tmpfs is not None else host_memory_bytes()
    for m in mounts:
        if not isinstance(m, MountSpec) or m.kind not in KINDS:
            raise InvalidSpec(f"invalid mount {m!r}: kind must be one of {', '.join(KINDS)}")
        target = validate_volume_target(m.target) if m.kind == "volume" else validate_target(m.target)
        if target in seen:
            raise InvalidSpec(f"two mounts on {target}: each target may be mounted once")
        seen.add(target)
        if m.kind == "volume":
            validate_volume_name(m.source)
        elif m.kind == "bind":
            if not allow_host_paths:
                raise InvalidSpec(
                    f"bind mount of host path {m.source!r} refused: host paths are an operator feature "
                    "(allow_host_paths); use a named volume"
                )
            if not m.source.startswith("/") or "\x00" in m.source:
                raise InvalidSpec(f"invalid bind mount source {m.source!r}: use an absolute host path")
            if not os.path.exists(m.source):
                raise InvalidSpec(f"bind mount source {m.source!r} does not exist on this host")
        else:
            if m.source:
                raise InvalidSpec(f"a tmpfs mount takes no source (got {m.source!r})")
            if isinstance(m.size, bool) or not isinstance(m.size, int) or m.size <= 0:
                raise InvalidSpec(f"tmpfs on {target} needs a size, e.g. --tmpfs {target}:size=16m")
            if limit is not None and m.size > limit:
                raise InvalidSpec(
                    f"tmpfs on {target}: size {m.size} is more than this host's memory ({limit})"
                )
            if m.mode is not None and (
                isinstance(m.mode, bool) or not isinstance(m.mode, int) or not 0 <= m.mode <= 0o7777
            ):
                raise InvalidSpec(f"tmpfs on {target}: invalid mode {m.mode!r} (octal, e.g. 1777)")
        result.append(
            MountSpec(
                kind=m.kind, target=target, source=m.source, read_only=m.read_only, size=m.size, mode=m.mode
            )
        )
    return tuple(result)
