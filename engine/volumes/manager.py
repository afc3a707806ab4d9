"""Named volumes: create, list, remove, mount on use, usage, export and import.

On disk, below ``<root>/volumes/<name>/``:

- ``volume.json``: the :class:`Volume` record;
- ``disk.ext4``: the sparse ext4 image of a size-limited volume;
- ``_data/``: what containers bind: the plain directory of a volume without a
  size, or the mount point of the ext4 image (root-owned and mode 000 while
  unmounted, so nothing can write below it by mistake);
- ``users/<container-id>``: one marker per container that mounts the volume.

An ext4 volume is mounted while some container that uses it exists, and for
the length of an export/import; after a host reboot it is mounted again when
such a container starts. A volume is created in ``.new-*`` and renamed into
place, and removed by renaming it to ``.gone-*`` first, so a half volume never
carries a name.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.errors import (
    Conflict,
    EngineError,
    InvalidArchive,
    InvalidSpec,
    NotFound,
    QuotaExceeded,
    RuntimeFailure,
    VolumeNotFound,
)
from engine.events import EventJournal
from engine.fsutil import atomic_write_json, file_lock, read_json
from engine.images.extract import extract_layer, remove_tree
from engine.paths import EnginePaths
from engine.runtime.idmap import TenantIdRanges, validate_tenant
from engine.runtime.oci_spec import BindMount, TmpfsMount
from engine.volumes import disk
from engine.volumes.archive import export_tree
from engine.volumes.model import DRIVER_DIR, DRIVER_EXT4, TenantVolumeUsage, Volume, VolumeUsage
from engine.volumes.spec import MountSpec, validate_volume_name, validate_volume_size

DEFAULT_TENANT = "default"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class VolumeManager:
    """Volumes of one engine root. ``default_size`` caps volumes created on first use."""

    def __init__(
        self, paths: EnginePaths, id_ranges: TenantIdRanges, default_size: int | None = None
    ) -> None:
        self.paths = paths
        self.id_ranges = id_ranges
        self.default_size = default_size
        self.events = EventJournal(paths.events)

    # ---- paths and records ------------------------------------------------------
    def directory(self, name: str) -> Path:
        """The directory of volume ``name``; InvalidSpec for a bad name."""
        return self.paths.volumes / validate_volume_name(name)

    def data_dir(self, name: str) -> Path:
        """The host directory containers bind for volume ``name``."""
        return self.directory(name) / "_data"

    def _lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.paths.run / "locks" / f"volume.{name}")

    def get(self, name: str) -> Volume:
        """The record of volume ``name``. Raises InvalidSpec (bad name) or VolumeNotFound."""
        try:
            return Volume.from_dict(read_json(self.directory(name) / "volume.json"))
        except FileNotFoundError:
            raise VolumeNotFound(
                f"no such volume: {name} (see `hpctl volume ls`; create it with `hpctl volume create {name}`)"
            ) from None

    def exists(self, name: str) -> bool:
        """Whether volume ``name`` exists; InvalidSpec for a bad name."""
        return (self.directory(name) / "volume.json").exists()

    def list(self, tenant: str | None = None) -> list[Volume]:
        """Every volume (of ``tenant`` if given), sorted by name."""
        result = []
        if self.paths.volumes.exists():
            for d in sorted(self.paths.volumes.iterdir()):
                if d.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError, ValueError, TypeError, EngineError):
                    v = self.get(d.name)
                    if tenant is None or v.tenant == tenant:
                        result.append(v)
        return result

    # ---- create -----------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        tenant: str = DEFAULT_TENANT,
        size: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> Volume:
        """Create volume ``name`` for ``tenant``, capped at ``size`` bytes (None: no cap).

        Raises InvalidSpec (bad name, tenant or size), Conflict (the name is
        taken) or RuntimeFailure (mkfs or mount failed). On error nothing is
        left: no directory, no loop device, no mount.
        """
        validate_volume_name(name)
        validate_tenant(tenant)
        if size is not None:
            validate_volume_size(size, disk.fs_total(self.paths.volumes))
        if self.exists(name):
            raise Conflict(f"volume {name!r} already exists; remove it first or choose another name")
        id_range = self.id_ranges.range_for(tenant)
        staging = self.paths.volumes / f".new-{name}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            volume = Volume(
                name=name,
                tenant=tenant,
                driver=DRIVER_EXT4 if size else DRIVER_DIR,
                size=size or 0,
                uid_base=id_range.base,
                created=_now(),
                labels=dict(labels or {}),
            )
            data = staging / "_data"
            data.mkdir()
            (staging / "users").mkdir()
            if size:
                os.chmod(data, 0o000)
                image = staging / "disk.ext4"
                disk.make_ext4(image, size, id_range.base, id_range.base)
                disk.mount_ext4_image(image, data)
                try:
                    with contextlib.suppress(FileNotFoundError):
                        (data / "lost+found").rmdir()  # root-owned; e2fsck recreates it if needed
                    usable, _used = disk.fs_usage(data)
                    sb_total = disk.read_ext4_super(image)
                    volume.overhead = max(0, sb_total.blocks * sb_total.block_size - usable)
                finally:
                    disk.unmount(data)
            else:
                os.chown(data, id_range.base, id_range.base)
                os.chmod(data, 0o755)
            atomic_write_json(staging / "volume.json", volume.to_dict())
            try:
                os.rename(staging, self.paths.volumes / name)
            except OSError:
                raise Conflict(
                    f"volume {name!r} already exists; remove it first or choose another name"
                ) from None
        except BaseException:
            disk.unmount(staging / "_data")
            remove_tree(staging)
            raise
        self._event(volume, "create")
        return volume

    def _event(self, volume: Volume, action: str) -> None:
        attributes = {**volume.labels, "driver": "local"}
        self.events.record("volume", action, volume.name, attributes, tenant=volume.tenant)

    # ---- users and mounting -----------------------------------------------------
    def _live_users(self, name: str) -> builtins.list[str]:
        """Ids of containers that mount ``name`` and still exist; stale markers are dropped."""
        users_dir = self.directory(name) / "users"
        result = []
        with contextlib.suppress(FileNotFoundError):
            for marker in users_dir.iterdir():
                if (self.paths.containers / marker.name).is_dir():
                    result.append(marker.name)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        marker.unlink()
        return sorted(result)

    def users(self, name: str) -> builtins.list[str]:
        """Ids of the containers that use volume ``name``. Raises VolumeNotFound."""
        self.get(name)
        return self._live_users(name)

    def _ensure_mounted(self, volume: Volume) -> Path:
        data = self.data_dir(volume.name)
        if volume.driver == DRIVER_EXT4 and not disk.is_mountpoint(data):
            disk.mount_ext4_image(self.directory(volume.name) / "disk.ext4", data)
        return data

    def _unmount_if_unused(self, volume: Volume) -> None:
        if volume.driver == DRIVER_EXT4 and not self._live_users(volume.name):
            disk.unmount(self.data_dir(volume.name))

    def ensure_mounted(self, name: str) -> Path:
        """Mount volume ``name`` if it is not (after a host reboot); returns the path to bind.

        Raises VolumeNotFound (e.g. it was removed with -f) or RuntimeFailure.
        """
        with self._lock(name):
            return self._ensure_mounted(self.get(name))

    def acquire(self, name: str, container_id: str, tenant: str) -> tuple[Volume, Path, bool]:
        """Record that ``container_id`` of ``tenant`` uses ``name`` and mount it.

        Creates the volume for ``tenant`` first if it does not exist (with
        ``default_size``). Returns (volume, host path to bind, created).
        Raises Conflict when the volume belongs to another tenant.
        """
        created = False
        if not self.exists(name):
            try:
                self.create(name, tenant=tenant, size=self.default_size)
                created = True
            except Conflict:
                pass  # created by someone else meanwhile
        with self._lock(name):
            volume = self.get(name)
            if volume.tenant != tenant:
                raise Conflict(
                    f"volume {name!r} belongs to another tenant; a container of tenant {tenant!r} "
                    "can only mount its own tenant's volumes"
                )
            marker = self.directory(name) / "users" / container_id
            marker.parent.mkdir(exist_ok=True)
            marker.touch()
            try:
                path = self._ensure_mounted(volume)
            except BaseException:
                marker.unlink()
                raise
        return volume, path, created

    def release(self, name: str, container_id: str) -> None:
        """Forget that ``container_id`` uses ``name``; unmount it if nobody else does.

        A volume that no longer exists (removed with -f) is fine.
        """
        with self._lock(name):
            volume: Volume | None = None
            with contextlib.suppress(VolumeNotFound):
                volume = self.get(name)
            if volume is not None:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory(name) / "users" / container_id).unlink()
                self._unmount_if_unused(volume)
        if volume is None:
            with contextlib.suppress(FileNotFoundError):
                (self.paths.run / "locks" / f"volume.{name}").unlink()

    # ---- containers' mounts -------------------------------------------------------
    def attach(
        self, mounts: Iterable[MountSpec], *, tenant: str, container_id: str, undo: ExitStack
    ) -> builtins.list[BindMount | TmpfsMount]:
        """Prepare a container's mounts (validated already): the runtime mounts, in target order.

        Volumes are acquired (created on first use); ``undo`` gets the
        callbacks that release them and remove volumes created here, for a
        create that fails later.
        """
        result: builtins.list[tuple[str, BindMount | TmpfsMount]] = []
        for m in mounts:
            if m.kind == "volume":
                _volume, path, created = self.acquire(m.source, container_id, tenant)
                if created:
                    undo.callback(self._remove_quietly, m.source)
                undo.callback(self.release, m.source, container_id)
                result.append((m.target, BindMount(str(path), m.target, read_only=m.read_only)))
            elif m.kind == "bind":
                result.append((m.target, BindMount(m.source, m.target, read_only=m.read_only)))
            else:
                result.append((m.target, TmpfsMount(m.target, m.size, m.mode, read_only=m.read_only)))
        result.sort(key=lambda item: item[0].count("/"))
        return [mount for _target, mount in result]

    def reattach(self, mounts: Iterable[dict[str, Any]], container_id: str) -> None:
        """Mount again the volumes of a container that is started anew (e.g. after a reboot).

        Raises VolumeNotFound when a volume was removed since the container was
        created (also when one of the same name was made again: its user
        marker is missing, so a container never picks up someone else's new
        volume), NotFound for a vanished bind source, RuntimeFailure.
        """
        for data in mounts:
            m = MountSpec.from_dict(data)
            if m.kind == "volume":
                gone = VolumeNotFound(
                    f"volume {m.source!r} of this container was removed; remove the container "
                    "and create it again"
                )
                with self._lock(m.source):
                    try:
                        volume = self.get(m.source)
                    except VolumeNotFound:
                        raise gone from None
                    if not (self.directory(m.source) / "users" / container_id).exists():
                        raise gone
                    self._ensure_mounted(volume)
            elif m.kind == "bind" and not os.path.exists(m.source):
                raise NotFound(f"bind mount source {m.source!r} no longer exists on this host")

    def detach(self, mounts: Iterable[dict[str, Any]], container_id: str) -> None:
        """Release the volumes of a container that is being removed."""
        for data in mounts:
            m = MountSpec.from_dict(data)
            if m.kind == "volume":
                self.release(m.source, container_id)

    # ---- remove -----------------------------------------------------------------
    def remove(self, name: str, *, force: bool = False) -> Volume:
        """Remove volume ``name`` and its data.

        Raises VolumeNotFound, or Conflict when containers use it and not
        ``force``. With ``force`` running users keep their view until they
        stop (the space is freed then); their records can no longer start.
        """
        with self._lock(name):
            volume = self.get(name)
            users = self._live_users(name)
            if users and not force:
                shown = ", ".join(u[:12] for u in users)
                raise Conflict(
                    f"volume {name!r} is in use by container(s) {shown}; remove them first or use -f"
                )
            directory = self.directory(name)
            disk.unmount(directory / "_data")
            if disk.is_mountpoint(directory / "_data"):
                raise RuntimeFailure(f"cannot remove volume {name!r}: it is still mounted")
            trash = self.paths.volumes / f".gone-{name}-{secrets.token_hex(4)}"
            os.rename(directory, trash)
            remove_tree(trash)
        with contextlib.suppress(FileNotFoundError):
            (self.paths.run / "locks" / f"volume.{name}").unlink()
        self._event(volume, "destroy")
        return volume

    def _remove_quietly(self, name: str) -> None:
        with contextlib.suppress(EngineError):
            self.remove(name)

    def prune(self, tenant: str | None = None) -> builtins.list[str]:
        """Remove every volume (of ``tenant``) that no container uses; returns their names."""
        removed: builtins.list[str] = []
        for volume in self.list(tenant):
            with contextlib.suppress(Conflict, VolumeNotFound):
                self.remove(volume.name)
                removed.append(volume.name)
        self.unmount_unused()
        return removed

    def unmount_unused(self) -> builtins.list[str]:
        """Unmount the size-limited volumes that no container uses any more; returns their names.

        Normally the last container's removal unmounts its volumes; this
        tidies up after an engine crash in the middle of a removal (the host
        agent may call it when it starts).
        """
        done = []
        for volume in self.list():
            if volume.driver != DRIVER_EXT4:
                continue
            with self._lock(volume.name):
                if disk.is_mountpoint(self.data_dir(volume.name)) and not self._live_users(volume.name):
                    disk.unmount(self.data_dir(volume.name))
                    done.append(volume.name)
        return done

    # ---- usage ------------------------------------------------------------------
    def usage(self, name: str) -> VolumeUsage:
        """Disk use of volume ``name`` (cheap: statvfs or the ext4 superblock, no mount).

        Raises VolumeNotFound.
        """
        volume = self.get(name)
        directory = self.directory(name)
        data = directory / "_data"
        mounted = volume.driver == DRIVER_EXT4 and disk.is_mountpoint(data)
        if volume.driver == DRIVER_EXT4:
            image = directory / "disk.ext4"
            allocated = disk.allocated_bytes(image)
            if mounted:
                used = disk.fs_usage(data)[1]
            elif disk.attached_loop_device(image) is not None:
                # alive in another mount namespace: the superblock on disk is not current
                with self._mounted(volume) as live:
                    used = disk.fs_usage(live)[1]
            else:
                sb = disk.read_ext4_super(image)
                used = max(0, (sb.blocks - sb.free_blocks) * sb.block_size - volume.overhead)
        else:
            allocated = used = disk.allocated_bytes(data)
        return VolumeUsage(
            name=name,
            tenant=volume.tenant,
            size=volume.size,
            used=used,
            allocated=allocated,
            mounted=mounted,
            users=len(self._live_users(name)),
        )

    def usage_all(self, tenant: str | None = None) -> builtins.list[VolumeUsage]:
        """Disk use of every volume (of ``tenant``)."""
        result: builtins.list[VolumeUsage] = []
        for volume in self.list(tenant):
            with contextlib.suppress(VolumeNotFound, FileNotFoundError):
                result.append(self.usage(volume.name))
        return result

    def tenant_usage(self, tenant: str) -> TenantVolumeUsage:
        """Totals over the volumes of ``tenant``, for metering. Raises InvalidSpec for a bad name."""
        validate_tenant(tenant)
        rows = self.usage_all(tenant)
        return TenantVolumeUsage(
            tenant=tenant,
            volumes=len(rows),
            size=sum(r.size for r in rows),
            used=sum(r.used for r in rows),
            allocated=sum(r.allocated for r in rows),
        )

    # ---- backup and restore -------------------------------------------------------
    @contextlib.contextmanager
    def _mounted(self, volume: Volume) -> Iterator[Path]:
        """The volume's data directory, mounted for the block (and unmounted after if unused)."""
        with self._lock(volume.name):
            path = self._ensure_mounted(volume)
        try:
            yield path
        finally:
            with self._lock(volume.name):
                self._unmount_if_unused(volume)

    def export(self, name: str, out: IO[bytes]) -> int:
        """Write volume ``name``'s content as a tar stream to ``out``; returns the member count.

        Owners are written as container ids. Raises VolumeNotFound or RuntimeFailure.
        """
        volume = self.get(name)
        with self._mounted(volume) as data:
            return export_tree(data, out, volume.uid_base)

    def import_(
        self, name: str, stream: IO[bytes], *, tenant: str = DEFAULT_TENANT, size: int | None = None
    ) -> Volume:
        """Restore a tar (from :meth:`export`) into volume ``name``.

        The volume is created for ``tenant`` with ``size`` if it does not
        exist; an existing one must be empty and unused. Extraction is the
        image layers' (no escaping paths, no devices, no setuid, owners
        shifted into the tenant's range). Raises InvalidArchive/UnsafeArchive,
        QuotaExceeded (the data does not fit), Conflict or InvalidSpec; on
        error a volume created here is removed and an existing one is emptied.
        """
        created = False
        if not self.exists(name):
            self.create(name, tenant=tenant, size=size)
            created = True
        volume = self.get(name)
        if not created:
            if size is not None and size != volume.size:
                raise InvalidSpec(
                    f"volume {name!r} exists already (size {volume.size or 'unlimited'}); "
                    "--size only applies to a volume that import creates"
                )
            if self._live_users(name):
                raise Conflict(f"volume {name!r} is in use; stop and remove its containers first")
            with self._mounted(volume) as data:
                if any(data.iterdir()):
                    raise Conflict(f"volume {name!r} is not empty; import into a new or empty volume")
        try:
            with self._mounted(volume) as data:
                try:
                    extract_layer(stream, data, uid_base=volume.uid_base, whiteouts=False)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise QuotaExceeded(
                            f"the archive does not fit in volume {name!r} ({volume.size} bytes)"
                        ) from None
                    raise
        except (EngineError, OSError, InvalidArchive):
            if created:
                self._remove_quietly(name)
            else:
                with self._mounted(volume) as data:
                    for child in list(data.iterdir()):
                        remove_tree(child)
            raise
        return volume
