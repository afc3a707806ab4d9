"""Per-tenant root file system disks: the writes of a tenant's containers, bounded.

A tenant with a disk (``hpctl tenant storage set``, or the host agent from the panel's
quota) has a sparse ext4 file ``<root>/tenants/disks/<tenant>.ext4`` of that size. While
the tenant has containers on the host it is loop-mounted at ``<root>/tenants/rootfs/<tenant>``
and every container's overlay upper and work directories live in ``<mount>/<container-id>/``
(the bundle's ``upper`` and ``work`` are links to them), so all the tenant's root file
system writes together hit ENOSPC at the disk's size instead of filling the host's disk.
The disk is mounted with the tenant's first container and unmounted with its last (under
the tenant lock), like the tenant cgroup. A tenant without a disk keeps its upper
directories in the bundle, as before. The ext4 and loop seam is ``engine.volumes.disk``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Conflict, InvalidSpec, NotFound, RuntimeFailure
from engine.fsutil import atomic_write_json, read_json
from engine.paths import EnginePaths
from engine.runtime.idmap import validate_tenant
from engine.volumes.disk import is_mountpoint, make_ext4, mount_ext4_image, unmount

MIN_DISK = 64 * 1024 * 1024
SYSTEM_ENTRIES = {"lost+found"}


@dataclass(frozen=True)
class TenantDisk:
    """A tenant's root file system disk on this host: its size, bytes in use and whether it is mounted."""

    tenant: str
    size: int
    used: int
    mounted: bool

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"tenant": self.tenant, "size": self.size, "used": self.used, "mounted": self.mounted}


class TenantDisks:
    """The tenant root file system disks of one engine instance (see the module doc)."""

    def __init__(
        self, paths: EnginePaths, lock: Callable[[str], contextlib.AbstractContextManager[None]]
    ) -> None:
        self.directory = paths.tenants / "disks"
        self.mounts = paths.tenants / "rootfs"
        self._lock = lock

    def _image(self, tenant: str) -> Path:
        return self.directory / f"{validate_tenant(tenant)}.ext4"

    def _config(self, tenant: str) -> Path:
        return self.directory / f"{validate_tenant(tenant)}.json"

    def mount_point(self, tenant: str) -> Path:
        """Where the tenant's disk is mounted while it has containers."""
        return self.mounts / validate_tenant(tenant)

    def size(self, tenant: str) -> int | None:
        """The size of the tenant's disk, or None when it has none."""
        try:
            return int(read_json(self._config(tenant))["size"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            raise InvalidSpec(f"the disk settings of tenant {tenant} are damaged; set them again") from None

    def show(self, tenant: str) -> TenantDisk:
        """The tenant's disk; NotFound when it has none."""
        size = self.size(tenant)
        if size is None:
            raise NotFound(f"tenant {tenant} has no root file system disk on this host")
        mount = self.mount_point(tenant)
        mounted = is_mountpoint(mount)
        used = 0
        if mounted:
            st = os.statvfs(mount)
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
        else:
            with contextlib.suppress(FileNotFoundError):
                used = os.stat(self._image(tenant)).st_blocks * 512
        return TenantDisk(tenant, size, used, mounted)

    def set(self, tenant: str, size: int) -> TenantDisk:
        """Give ``tenant`` a disk of ``size`` bytes, or grow the one it has.

        A disk in use (mounted) grows when it is next mounted, after the tenant's containers
        on this host are gone: an online resize needs CAP_SYS_RESOURCE. Raises InvalidSpec
        for a size below 64 MiB or below the disk's current size (a disk never shrinks:
        remove it with `hpctl tenant storage rm` while the tenant has no containers),
        RuntimeFailure when mkfs/resize fails.
        """
        if size < MIN_DISK:
            raise InvalidSpec(f"a tenant disk needs at least {MIN_DISK} bytes (64 MiB); asked for {size}")
        with self._lock(tenant):
            old = self.size(tenant)
            image = self._image(tenant)
            if old is None or not image.exists():
                self.directory.mkdir(parents=True, exist_ok=True)
                image.unlink(missing_ok=True)
                try:
                    make_ext4(image, size, 0, 0)
                except BaseException:
                    image.unlink(missing_ok=True)
                    raise
            elif size < old:
                raise InvalidSpec(
                    f"tenant {tenant}'s disk is {old} bytes and cannot shrink to {size}; remove it with "
                    "`hpctl tenant storage rm` while the tenant has no containers, then set it again"
                )
            elif size > old and not is_mountpoint(self.mount_point(tenant)):
                self._grow(tenant, image, size)
            # a mounted disk grows when it is next mounted (its tenant's containers are gone)
            atomic_write_json(self._config(tenant), {"size": size})
        return self.show(tenant)

    @staticmethod
    def _grow(tenant: str, image: Path, size: int) -> None:
        """Grow the unmounted disk ``image`` to ``size`` (an online resize needs CAP_SYS_RESOURCE)."""
        os.truncate(image, size)
        steps: list[tuple[list[str], tuple[int, ...]]] = [
            (["e2fsck", "-f", "-p", str(image)], (0, 1)),
            (["resize2fs", str(image)], (0,)),
        ]
        for cmd, ok in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode not in ok:  # e2fsck: 1 = errors corrected
                raise RuntimeFailure(f"cannot grow tenant {tenant}'s disk: {proc.stderr.strip()}")

    def remove(self, tenant: str) -> None:
        """Delete the tenant's disk (the tenant purge calls this); Conflict while it has containers."""
        with self._lock(tenant):
            mount = self.mount_point(tenant)
            if is_mountpoint(mount):
                if self._container_dirs(mount):
                    raise Conflict(f"tenant {tenant} still has containers on this host; remove them first")
                unmount(mount)
            with contextlib.suppress(FileNotFoundError):
                mount.rmdir()
            self._image(tenant).unlink(missing_ok=True)
            self._config(tenant).unlink(missing_ok=True)

    def container_dir(self, tenant: str, cid: str) -> Path | None:
        """The directory on the tenant's disk for container ``cid``'s upper and work dirs (made,
        the disk mounted if need be); None when the tenant has no disk."""
        if self.size(tenant) is None:
            return None
        with self._lock(tenant):
            mount = self.mount_point(tenant)
            if not is_mountpoint(mount):
                image, size = self._image(tenant), self.size(tenant) or 0
                if image.stat().st_size < size:
                    self._grow(tenant, image, size)
                mount.mkdir(parents=True, exist_ok=True)
                mount_ext4_image(image, mount)
            directory = mount / cid
            try:
                directory.mkdir(mode=0o700, exist_ok=True)
            except BaseException:
                self._unmount_if_unused(mount)
                raise
            return directory

    def release(self, tenant: str, cid: str) -> None:
        """Delete container ``cid``'s directory and unmount the disk when no container is left on it."""
        mount = self.mount_point(tenant)
        with self._lock(tenant):
            if not is_mountpoint(mount):
                return
            shutil.rmtree(mount / cid, ignore_errors=True)
            self._unmount_if_unused(mount)

    def _unmount_if_unused(self, mount: Path) -> None:
        if not self._container_dirs(mount):
            unmount(mount)

    @staticmethod
    def _container_dirs(mount: Path) -> list[str]:
        return [name for name in os.listdir(mount) if name not in SYSTEM_ENTRIES]
