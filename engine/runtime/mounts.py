"""The seam for mount(2)/umount(2): overlay root file systems and small tmpfs mounts."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from engine.cgroups.layout import parse_mountinfo
from engine.errors import RuntimeFailure

MNT_DETACH = 2
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_overlay(lowers_top_first: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay of ``lowers`` (top first) with ``upper``/``work`` at ``target``.

    Raises RuntimeFailure with the kernel's reason.
    """
    if not lowers_top_first:
        raise RuntimeFailure("an overlay needs at least one lower layer")
    options = f"lowerdir={':'.join(str(p) for p in lowers_top_first)},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"cannot mount the container's overlay root at {target}: {os.strerror(err)}")


def mount_tmpfs(target: Path, *, size: int, mode: int, uid: int, gid: int, max_inodes: int) -> None:
    """Mount a nosuid,nodev,noexec tmpfs of ``size`` bytes at ``target``; its root gets mode/uid/gid.

    Raises RuntimeFailure with the kernel's reason.
    """
    options = f"size={size},nr_inodes={max_inodes},mode={mode:o},uid={uid},gid={gid}"
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"cannot mount a tmpfs at {target}: {os.strerror(err)}")


def fs_type(path: Path) -> str | None:
    """The file system type of the topmost mount at exactly ``path`` (None: not a mount point)."""
    target = str(path)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == target and " - " in line:
                found = line.split(" - ", 1)[1].split()[0]
    return found


def unmount(target: Path) -> None:
    """Lazily unmount ``target``; not mounted is fine."""
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise RuntimeFailure(f"cannot unmount {target}: {os.strerror(err)}")


def is_mountpoint(path: Path) -> bool:
    """Whether ``path`` is listed as a mount point in /proc/self/mountinfo."""
    target = str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == target:
                return True
    return False


def mounted_under(path: Path, mountinfo: str = "/proc/self/mountinfo") -> list[Path]:
    """The mount points at ``path`` or below it (this process's mount namespace), deepest first.

    ``path`` is resolved first, as the table lists real paths (an engine root may be given
    through a symlink). A host has hundreds of mounts and this runs on every removal, so only
    the lines holding ``path`` as the kernel escapes it are parsed.
    """
    top = os.path.realpath(path)
    escaped = "".join(_MOUNTINFO_ESCAPES.get(ch, ch) for ch in top)
    with open(mountinfo, encoding="utf-8") as f:
        candidates = "".join(line for line in f if escaped in line)
    below = top.rstrip("/") + "/"
    points = [str(entry.mount_point) for entry in parse_mountinfo(candidates)]
    found = [Path(p) for p in points if p == top or p.startswith(below)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


_MOUNTINFO_ESCAPES = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}
"""The characters /proc/self/mountinfo writes as octal escapes."""
