"""The kernel seam of volumes: ext4 images, loop devices, mounts and disk usage.

A size-limited volume is an ext4 file system in a sparse file. It is
attached to a free loop device with ``LOOP_CONFIGURE`` and the autoclear
flag, so the loop device goes away by itself when the file system is
unmounted (lazily, after the last container that bound it has exited).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RuntimeFailure
from engine.runtime.mounts import is_mountpoint, unmount

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_RDONLY = 0x1
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LOOP_GET_STATUS64 = 0x4C05
LO_FLAGS_AUTOCLEAR = 4
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32sQQ")  # struct loop_info64
_LOOP_CONFIG_TAIL = struct.Struct("=8Q")  # loop_config.__reserved
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

__all__ = ["is_mountpoint", "unmount"]


def make_ext4(image: Path, size: int, uid: int, gid: int) -> None:
    """Create a sparse file of ``size`` bytes at ``image`` holding an empty ext4 file system.

    The file system's root belongs to ``uid:gid``; no blocks are reserved for
    (host) root. Raises RuntimeFailure if mkfs.ext4 fails; the caller removes
    ``image``.
    """
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    cmd = ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{gid}", str(image)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeFailure("mkfs.ext4 is missing; install e2fsprogs (`hpctl host setup`)") from None
    if proc.returncode != 0:
        raise RuntimeFailure(f"mkfs.ext4 failed for {image}: {proc.stderr.strip() or proc.returncode}")


def _attach_loop(image: Path, read_only: bool) -> tuple[int, str]:
    """Bind ``image`` to a free loop device with autoclear; returns (open fd, device path)."""
    backing = os.open(image, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    try:
        try:
            ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot use loop devices (/dev/loop-control: {exc.strerror}); size-limited volumes "
                "need the kernel's loop driver"
            ) from None
        try:
            for _ in range(64):
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                try:
                    loop_fd = os.open(device, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                flags = LO_FLAGS_AUTOCLEAR | (1 if read_only else 0)  # LO_FLAGS_READ_ONLY = 1
                info = _LOOP_INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)
                config = struct.pack("=II", backing, 0) + info + _LOOP_CONFIG_TAIL.pack(*([0] * 8))
                try:
                    fcntl.ioctl(loop_fd, LOOP_CONFIGURE, config)
                except OSError as exc:
                    os.close(loop_fd)
                    if exc.errno == errno.EBUSY:
                        continue  # another process took this device first
                    raise RuntimeFailure(f"cannot attach {image} to {device}: {exc.strerror}") from None
                return loop_fd, device
            raise RuntimeFailure(f"cannot find a free loop device for {image}")
        finally:
            os.close(ctl)
    finally:
        os.close(backing)


def attached_loop_device(image: Path) -> str | None:
    """The loop device ``image`` is attached to already, if any (matched by device and inode).

    An ext4 file system stays alive after our unmount while some other mount
    namespace still holds a copy of the mount; its loop device then still exists.
    """
    try:
        st = os.stat(image)
    except FileNotFoundError:
        return None
    for sys_dir in Path("/sys/block").glob("loop*"):
        if not (sys_dir / "loop" / "backing_file").exists():
            continue
        device = f"/dev/{sys_dir.name}"
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            raw = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
        except OSError:
            continue
        finally:
            os.close(fd)
        lo_device, lo_inode = _LOOP_INFO64.unpack(raw)[:2]
        # user-space dev_t encoding; the kernel's own (major << 20 | minor) is accepted too
        kernel_dev = os.major(st.st_dev) << 20 | os.minor(st.st_dev)
        if lo_inode == st.st_ino and lo_device in (st.st_dev, kernel_dev):
            return device
    return None


def _mount_device(device: str, image: Path, target: Path, read_only: bool) -> None:
    flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
    if _libc.mount(device.encode(), os.fsencode(target), b"ext4", flags, b"discard") != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(
            f"cannot mount volume file system {image} at {target}: {os.strerror(err)} "
            f"(if the host crashed, check it with `e2fsck -f {image}`)"
        )


def mount_ext4_image(image: Path, target: Path, *, read_only: bool = False) -> None:
    """Mount the ext4 file system in ``image`` at ``target`` (nosuid, nodev, discard).

    The loop device is released when the file system is unmounted. If the
    image is still attached (its file system alive in another mount
    namespace), that device is mounted again, so one image never backs two
    live ext4 instances. Raises RuntimeFailure with the kernel's reason; on
    failure nothing stays attached.
    """
    existing = attached_loop_device(image)
    if existing is not None:
        try:
            _mount_device(existing, image, target, read_only)
            return
        except RuntimeFailure:
            if attached_loop_device(image) is not None:
                raise
            # it went away meanwhile: attach afresh below
    loop_fd, device = _attach_loop(image, read_only)
    try:
        _mount_device(device, image, target, read_only)
    except BaseException:
        # Autoclear only triggers on the last close of a device that was opened by a mount;
        # detach explicitly when the mount never happened.
        with contextlib.suppress(OSError):
            fcntl.ioctl(loop_fd, LOOP_CLR_FD)
        raise
    finally:
        os.close(loop_fd)


def loop_devices_backed_by(prefix: Path, settle: float = 0.0) -> list[str]:
    """Loop devices whose backing file is below ``prefix`` (for leak checks and cleanup).

    With ``settle`` > 0, polls up to that many seconds for them to go away
    (the kernel may release an autoclear device just after the unmount returns).
    """
    deadline = time.monotonic() + settle
    while True:
        found = _loop_devices_backed_by(prefix)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def _loop_devices_backed_by(prefix: Path) -> list[str]:
    found: list[str] = []
    base = Path("/sys/block")
    if not base.exists():
        return found
    for dev in base.glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(prefix).rstrip("/") + "/"):
            found.append(f"/dev/{dev.name} -> {backing}")
    return found


def fs_usage(path: Path) -> tuple[int, int]:
    """(usable bytes, used bytes) of the file system mounted at ``path`` (statvfs, like df)."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize


def fs_total(path: Path) -> int:
    """Total size in bytes of the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


@dataclass(frozen=True)
class Ext4Super:
    """The numbers of an ext4 superblock that usage reporting needs."""

    block_size: int
    blocks: int
    free_blocks: int


def read_ext4_super(image: Path) -> Ext4Super:
    """Read the superblock of the (unmounted) ext4 ``image`` without mounting it.

    Raises RuntimeFailure when the file holds no ext4 superblock.
    """
    with open(image, "rb") as f:
        f.seek(1024)
        sb = f.read(1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        raise RuntimeFailure(f"{image} holds no ext4 file system")
    blocks_lo, _r, free_lo = struct.unpack_from("<III", sb, 0x04)
    log_block = struct.unpack_from("<I", sb, 0x18)[0]
    incompat = struct.unpack_from("<I", sb, 0x60)[0]
    blocks, free = blocks_lo, free_lo
    if incompat & 0x80:  # INCOMPAT_64BIT
        blocks |= struct.unpack_from("<I", sb, 0x150)[0] << 32
        free |= struct.unpack_from("<I", sb, 0x158)[0] << 32
    return Ext4Super(block_size=1024 << log_block, blocks=blocks, free_blocks=free)


def allocated_bytes(path: Path) -> int:
    """Bytes ``path`` takes on disk: its blocks, or for a directory the blocks of its tree.

    Walks without following symlinks and without crossing into other mounts.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    total = top.st_blocks * 512
    if not stat.S_ISDIR(top.st_mode):
        return total
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode) and st.st_dev == top.st_dev:
                        stack.append(entry.path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return total
