"""Turn an overlayfs upper directory into an OCI layer tar.

The upper directory holds exactly what a step changed: new and modified
files, 0:0 character devices for deletions (written as ``.wh.NAME``) and
directories with the ``trusted.overlay.opaque`` xattr (written with a
``.wh..wh..opq`` member). Owners are shifted back from the tenant's host
range to image ids (the inverse of :func:`engine.images.extract.shift_id`);
ids outside the range become nobody. Mount points that the runtime creates
for a build container (``/etc/hosts`` ...) are left out when they are empty.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engine.errors import RuntimeFailure
from engine.images.extract import ID_RANGE, NOBODY
from engine.images.tarpath import OPAQUE_MARKER, WHITEOUT_PREFIX

# Mount points crun or the engine may create in a build container's rootfs.
RUNTIME_MOUNT_POINTS = frozenset(
    {"etc/hosts", "etc/hostname", "etc/resolv.conf", ".hpinit", "proc", "sys", "dev", "dev/shm", "dev/pts"}
)
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")


@dataclass
class DiffStats:
    """What a diff wrote."""

    entries: int = 0
    whiteouts: int = 0


def unshift_id(host_id: int, uid_base: int) -> int:
    """The image id of a host id in the range at ``uid_base`` (nobody when outside it)."""
    value = host_id - uid_base
    return value if 0 <= value < ID_RANGE else NOBODY


def _xattr(path: str, name: str) -> bytes | None:
    for prefix in _OVERLAY_XATTRS:
        try:
            return os.getxattr(path, prefix + name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP, errno.EPERM):
                raise
    return None


def _walk(top: str, rel: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    with os.scandir(top) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        child_rel = f"{rel}/{child.name}" if rel else child.name
        st = child.stat(follow_symlinks=False)
        yield child_rel, child.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(child.path, child_rel)


def _is_empty_mount_point(rel: str, st: os.stat_result, path: str) -> bool:
    if rel not in RUNTIME_MOUNT_POINTS:
        return False
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    return stat.S_ISDIR(st.st_mode) and not os.listdir(path)


def write_layer(upper: Path, out: IO[bytes], uid_base: int) -> DiffStats:
    """Write the changes in ``upper`` as a tar layer to ``out``; returns what was written.

    Raises RuntimeFailure for an overlay feature the layer format cannot
    express (redirected directories, metadata-only copy-ups).
    """
    stats = DiffStats()
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, path, st in _walk(str(upper)):
            if _is_empty_mount_point(rel, st, path):
                continue
            if _xattr(path, "redirect") is not None or _xattr(path, "metacopy") is not None:
                raise RuntimeFailure(
                    f"cannot turn {rel!r} into a layer: overlayfs redirect_dir or metacopy is on; "
                    "turn them off (the engine mounts overlays without them)"
                )
            info = tarfile.TarInfo(rel)
            info.uid = unshift_id(st.st_uid, uid_base)
            info.gid = unshift_id(st.st_gid, uid_base)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            parent, _, name = rel.rpartition("/")
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                info.name = f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name
                info.type, info.mode, info.uid, info.gid = tarfile.REGTYPE, 0o644, 0, 0
                tar.addfile(info)
                stats.whiteouts += 1
                continue
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                if _xattr(path, "opaque") == b"y":
                    marker = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
                    marker.mtime = info.mtime
                    tar.addfile(marker)
                    stats.whiteouts += 1
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = links[key]
                    tar.addfile(info)
                else:
                    links[key] = rel
                    info.size = st.st_size
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    with os.fdopen(fd, "rb") as f:
                        tar.addfile(info, f)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                continue  # sockets and device nodes do not belong in a layer
            stats.entries += 1
    return stats
