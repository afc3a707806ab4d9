"""Container lifecycle: create, start, stop, kill, restart, remove, wait, exec.

State is kept on disk (``container.json`` per container) and reconciled with
what conmon recorded (the exit file), so `ps -a` is right after the engine
process restarts and an exit that nobody watched is still recorded.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import select
import shutil
import signal as signal_module
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.cgroups.tree import container_cgroup
from engine.errors import Conflict, ContainerNotFound, InvalidSpec, RuntimeFailure
from engine.events import EventJournal
from engine.fsutil import atomic_write_bytes, atomic_write_json
from engine.logs import k8s_file
from engine.paths import EnginePaths
from engine.runtime import mounts
from engine.runtime.idmap import TenantIdRanges, validate_tenant
from engine.runtime.model import ALIVE, Container, ContainerSpec, ExecSpec
from engine.runtime.monitors import MonitorWatch
from engine.runtime.oci_runtime import SECCOMP_BPF_ANNOTATION, MonitorFiles, OciRuntime, StdioOptions
from engine.runtime.oci_spec import BindMount, BundleSpec, ProcessSpec, build_config, process_json
from engine.runtime.process import (
    merge_env,
    normalize_signal,
    resolve_process,
    validate_env,
    validate_hostname,
    validate_workdir,
)
from engine.runtime.store import ContainerStore, validate_name

# What creating, starting or exec-ing needs (networks and pyroute2, volumes, quotas, OCI
# configs, secrets) is imported where it is used and its managers are made on first use:
# listing and inspecting containers stay lean (tests/engine/unit/test_cli_imports.py).
if TYPE_CHECKING:
    from engine.cgroups.resources import Resources
    from engine.cgroups.tenants import TenantQuotas
    from engine.images.store import ImageStore
    from engine.networks.manager import NetworkManager
    from engine.networks.model import NetworkJoin
    from engine.runtime.procfs import ProcessRow
    from engine.runtime.tenant_disks import TenantDisks
    from engine.volumes.manager import VolumeManager

INIT_CANDIDATES = ("/usr/bin/catatonit", "/usr/bin/tini-static")
INIT_DEST = "/.hpinit"
KILL_GRACE_SECONDS = 10.0
ACTIVE = ("created", "running", "paused")


def now_iso() -> str:
    """The current UTC time as RFC 3339 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _mtime_iso(path: Path) -> str:
    return (
        datetime.fromtimestamp(path.stat().st_mtime, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


class ContainerManager:
    """Runs containers for one engine instance."""

    def __init__(
        self,
        paths: EnginePaths,
        instance: str,
        images: ImageStore,
        cgroup_roots: Callable[[], Sequence[Path]],
    ) -> None:
        self.paths = paths
        self.instance = instance
        self.images = images
        self.store = ContainerStore(paths)
        self.runtime = OciRuntime(paths.run / "crun")
        self.id_ranges = TenantIdRanges(paths.tenants)
        self.exit_dir = paths.run / "exits"
        self._cgroup_roots = cgroup_roots
        self.events = EventJournal(paths.events)
        self.monitors = MonitorWatch()

    @functools.cached_property
    def quotas(self) -> TenantQuotas:
        """Tenant cgroups and their quotas (engine.cgroups.tenants), made on first use."""
        from engine.cgroups.controller import host_driver
        from engine.cgroups.tenants import TenantQuotas

        return TenantQuotas(self.paths, self.instance, host_driver, self._cgroup_roots)

    @functools.cached_property
    def tenant_disks(self) -> TenantDisks:
        """Tenants' root file system disks (engine.runtime.tenant_disks), made on first use."""
        from engine.runtime.tenant_disks import TenantDisks

        return TenantDisks(self.paths, self.quotas.lock)

    @functools.cached_property
    def networks(self) -> NetworkManager:
        """Tenant networks (engine.networks.manager), made on first use."""
        from engine.networks.manager import NetworkManager

        return NetworkManager(self.paths, self.instance)

    @functools.cached_property
    def volumes(self) -> VolumeManager:
        """Named volumes (engine.volumes.manager), made on first use."""
        from engine.volumes.manager import VolumeManager

        return VolumeManager(self.paths, self.id_ranges)

    # ---- files of one container -------------------------------------------------
    def files(self, cid: str) -> MonitorFiles:
        bundle = self.store.directory(cid)
        return MonitorFiles(
            bundle=bundle,
            log=bundle / "ctr.log",
            pidfile=bundle / "pid",
            conmon_pidfile=bundle / "conmon.pid",
            exit_dir=self.exit_dir,
            persist_dir=bundle / "persist",
        )

    def log_path(self, container: Container) -> Path:
        return self.files(container.id).log

    # ---- create -----------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Container:
        """Create (but do not start) a container from ``spec``.

        Raises ImageNotFound, InvalidSpec, CommandNotFound, Conflict (name in
        use) or RuntimeFailure; on any error nothing is left behind. Secrets
        become files in a tmpfs at /run/secrets (see engine.runtime.secrets).
        """
        from engine.cgroups.resources import oci_resources
        from engine.runtime.secrets import mount_secrets, unmount_secrets, validate_secrets
        from engine.volumes.spec import validate_mounts

        validate_tenant(spec.tenant)
        validate_env(spec.env)
        if spec.name is not None:
            validate_name(spec.name)
        if spec.workdir is not None:
            validate_workdir(spec.workdir)
        stop_signal = normalize_signal(spec.stop_signal) if spec.stop_signal else ""
        if spec.stop_timeout < 0:
            raise InvalidSpec(f"invalid stop timeout {spec.stop_timeout}: use 0 or more seconds")
        if spec.log.max_size < 4096 or spec.log.max_files < 1:
            raise InvalidSpec("invalid log options: max-size must be at least 4k and max-file at least 1")
        if spec.hostname is not None:
            validate_hostname(spec.hostname)
        user_mounts = validate_mounts(spec.mounts, allow_host_paths=spec.allow_privileged)
        secret_files = validate_secrets(spec.secrets, [m.target for m in user_mounts])
        self.quotas.check_container(spec.tenant, spec.resources)
        image = self.images.resolve(spec.image, tenant=spec.tenant)  # its own images + the base set
        stop_signal = stop_signal or (
            normalize_signal(image.config.stop_signal) if image.config.stop_signal else "SIGTERM"
        )
        id_range = self.id_ranges.range_for(spec.tenant)
        init_path = self._init_binary() if spec.init else None
        cid = self.store.new_id()
        hostname = spec.hostname or cid[:12]
        # Held until the record is saved or undone: a leftover whose lock is free is a crash's (recover)
        with self.store.lock(cid), ExitStack() as undo:
            undo.callback(self.store.forget_lock, cid)
            name = self.store.reserve_name(spec.name, cid)
            undo.callback(self.store.release_name, name, cid)
            bundle = self.store.directory(cid)
            bundle.mkdir(parents=True)
            undo.callback(shutil.rmtree, bundle, True)
            undo.callback(self.tenant_disks.release, spec.tenant, cid)
            rootfs = self._mount_rootfs(
                bundle, self.images.layer_dirs(image, id_range.base), id_range.base, spec.tenant
            )
            undo.callback(mounts.unmount, rootfs)
            process = resolve_process(spec, image, rootfs, hostname, INIT_DEST if init_path else None)
            if spec.tty:
                process = dataclasses.replace(process, terminal=True)
            self._prepare_workdir(rootfs, process, id_range.base)
            late_binds: list[BindMount] = []
            if secret_files:
                secrets_dir = self.store.secrets_dir(cid)
                late_binds.append(
                    mount_secrets(
                        secrets_dir,
                        secret_files,
                        uid=id_range.base + process.uid,
                        gid=id_range.base + process.gid,
                    )
                )
                undo.callback(unmount_secrets, secrets_dir)
            binds = self._write_etc_files(bundle, hostname, id_range.base)
            attachments = self.networks.attach_all(
                cid,
                name=name,
                hostname=hostname,
                tenant=spec.tenant,
                joins=spec.network_joins(),
                ports=spec.ports,
                hosts_path=bundle / "etc" / "hosts",
                allow_privileged=spec.allow_privileged,
            )
            undo.callback(self.networks.release, cid, [a.network for a in attachments])
            attachment = attachments[0]
            etc_files = {"resolv.conf": attachment.resolv_conf}
            if attachment.interface:
                # glibc answers a name with every /etc/hosts line that has it (a service's
                # replicas) only with "multi on"; musl always does. Debian's netbase ships the same.
                etc_files["host.conf"] = "multi on\n"
            for file_name, text in etc_files.items():
                if text:
                    path = bundle / "etc" / file_name
                    atomic_write_bytes(path, text.encode())
                    os.chown(path, id_range.base, id_range.base)
                    binds.append(BindMount(str(path), f"/etc/{file_name}", read_only=False))
            if init_path:
                binds.append(BindMount(init_path, INIT_DEST, read_only=True))
            extra_mounts = self.volumes.attach(user_mounts, tenant=spec.tenant, container_id=cid, undo=undo)
            cgroup = container_cgroup(self.instance, spec.tenant, cid)
            config = build_config(
                BundleSpec(
                    process=process,
                    hostname=hostname,
                    id_range=id_range,
                    cgroups_path=cgroup,
                    binds=tuple(binds),
                    user_mounts=(*extra_mounts, *late_binds),  # /run/secrets last: nothing hides it
                    netns_path=attachment.netns_path,
                    annotations={"org.hostpanel.tenant": spec.tenant},
                    resources=oci_resources(spec.resources),
                )
            )
            seccomp = config["linux"]["seccomp"]
            compiled = self.runtime.compiled_seccomp(seccomp)
            if compiled:
                config["annotations"][SECCOMP_BPF_ANNOTATION] = compiled
            atomic_write_json(bundle / "config.json", config, compact=True)
            container = Container(
                id=cid,
                name=name,
                tenant=spec.tenant,
                image=spec.image,
                image_id=image.id,
                command=list(process.args),
                status="created",
                created=now_iso(),
                uid_base=id_range.base,
                hostname=hostname,
                user=spec.user if spec.user is not None else image.config.user,
                env=list(process.env),
                workdir=process.cwd,
                init=spec.init,
                stop_signal=stop_signal,
                stop_timeout=spec.stop_timeout,
                labels=dict(spec.labels),
                layers=list(image.layers),
                cgroup_path=cgroup,
                log_max_size=spec.log.max_size,
                log_max_files=spec.log.max_files,
                resources=spec.resources,
                network=attachment.network,
                ip_address=attachment.ip_address,
                network_aliases=list(attachment.aliases),
                networks=[a.record() for a in attachments if a.interface],
                ports=[p.to_dict() for a in attachments for p in a.ports],
                netns_path=attachment.netns_path or "",
                mounts=[m.to_dict() for m in user_mounts],
                secrets=[s.name for s in secret_files],
                tty=spec.tty,
                open_stdin=spec.open_stdin,
                stdin_once=spec.stdin_once,
            )
            self.store.save(container)
            self._create_in_runtime(container)
            if not compiled:
                self.runtime.keep_compiled_seccomp(cid, seccomp)
            undo.pop_all()
        self._event(container, "create")
        return container

    def _event(self, container: Container, action: str, **extra: str) -> None:
        """Record a container event: its labels, name and image, and ``extra`` (exitCode, signal)."""
        attributes = {**container.labels, "name": container.name, "image": container.image, **extra}
        self.events.record("container", action, container.id, attributes, tenant=container.tenant)

    def _init_binary(self) -> str:
        for candidate in INIT_CANDIDATES:
            if os.access(candidate, os.X_OK):
                return candidate
        raise InvalidSpec("--init needs catatonit or tini-static on the host; run `hpctl host setup`")

    def _mount_rootfs(
        self, bundle: Path, layers_bottom_first: list[Path], uid_base: int, tenant: str
    ) -> Path:
        """Mount the container's overlay; its upper and work dirs are on the tenant's disk if it has one."""
        upper, work, rootfs = bundle / "upper", bundle / "work", bundle / "rootfs"
        on_disk = self.tenant_disks.container_dir(tenant, bundle.name)
        for d in (upper, work):
            if on_disk is None:
                d.mkdir(exist_ok=True)
            else:
                (on_disk / d.name).mkdir(exist_ok=True)
                if not d.is_symlink():
                    d.symlink_to(on_disk / d.name)
        rootfs.mkdir(exist_ok=True)
        os.chown(upper, uid_base, uid_base)
        os.chmod(upper, 0o755)
        mounts.mount_overlay(list(reversed(layers_bottom_first)), upper, work, rootfs)
        return rootfs

    @staticmethod
    def _prepare_workdir(rootfs: Path, process: ProcessSpec, uid_base: int) -> None:
        """Create the working directory in the rootfs if the image lacks it, like Docker."""
        from engine.runtime.rootpath import resolve_in_root

        target = resolve_in_root(rootfs, process.cwd)
        if target.exists():
            if not target.is_dir():
                raise InvalidSpec(
                    f"working directory {process.cwd!r} exists in the image but is not a directory"
                )
            return
        missing = []
        probe = target
        while not probe.exists() and probe != rootfs:
            missing.append(probe)
            probe = probe.parent
        for d in reversed(missing):
            d.mkdir()
            os.chown(d, uid_base + process.uid, uid_base + process.gid)

    @staticmethod
    def _write_etc_files(bundle: Path, hostname: str, uid_base: int) -> list[BindMount]:
        etc = bundle / "etc"
        etc.mkdir(exist_ok=True)
        files = {
            "hostname": f"{hostname}\n",
            "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{hostname}\n",
        }
        binds = []
        for name, content in files.items():
            path = etc / name
            atomic_write_bytes(path, content.encode())
            os.chown(path, uid_base, uid_base)
            binds.append(BindMount(str(path), f"/etc/{name}", read_only=False))
        return binds

    def _create_in_runtime(self, container: Container) -> None:
        files = self.files(container.id)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / container.id).unlink()
        hard_cap = container.log_max_size * (container.log_max_files + 1)
        try:
            # the tenant cgroup (with its quota) must exist before crun makes the container's below it
            with self.quotas.ready(container.tenant):
                pid = self.runtime.create(
                    container.id,
                    container.name,
                    files,
                    hard_cap,
                    stdio=StdioOptions(
                        terminal=container.tty,
                        stdin=container.open_stdin,
                        # a terminal stays open when a client detaches (detaching is no end of
                        # input there); a plain stdin ends with the first client's EOF if stdin_once
                        leave_stdin_open=container.open_stdin and (container.tty or not container.stdin_once),
                    ),
                )
        except RuntimeFailure:
            self._cleanup_runtime(container)
            raise
        container.pid = pid
        container.conmon_pid = _read_pid(files.conmon_pidfile)
        k8s_file.hold(files.log)  # conmon's next file too, before it can reach its cap
        self.store.save(container)

    # ---- start / status ---------------------------------------------------------
    def start(self, ref: str | Container) -> Container:
        """Start a created or exited container.

        Raises Conflict if it is running, or if it has secrets and they are
        gone because the host restarted since its create (they are never kept
        on disk): remove it and create it again with its secrets then.
        """
        from engine.runtime.secrets import require_secrets

        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.refresh(self.store.load(container.id))
            if container.status in ALIVE:
                raise Conflict(f"container {container.name} is already running")
            require_secrets(container.name, self.store.secrets_dir(container.id), container.secrets)
            if container.status != "created":
                self._recreate(container)
            self._died_marker(container.id).unlink(missing_ok=True)  # this run's exit is new
            with self.quotas.ready(container.tenant):  # the quota sits above it before it runs
                self.runtime.start(container.id)
            container.status = "running"
            container.started_at = now_iso()
            container.finished_at = ""
            container.exit_code = None
            container.oom_killed_at = ""
            self.store.save(container)
        self._event(container, "start")
        return container

    def _recreate(self, container: Container) -> None:
        """Make an exited container startable again: fresh runtime state, same rootfs and logs."""
        self.runtime.delete(container.id, force=True)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / container.id).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.files(container.id).persist_dir / "oom").unlink()
        rootfs = self.store.directory(container.id) / "rootfs"
        if not mounts.is_mountpoint(rootfs):
            image = self.images.resolve(container.image_id)
            self._mount_rootfs(
                self.store.directory(container.id),
                self.images.layer_dirs(image, container.uid_base),
                container.uid_base,
                container.tenant,
            )
        self.volumes.reattach(container.mounts, container.id)  # loop mounts are gone after a reboot
        self._create_in_runtime(container)

    def refresh(self, container: Container) -> Container:
        """Bring the record up to date with what conmon recorded; saves changes."""
        if container.status not in ACTIVE:
            return container
        # Ask whether the monitor lives BEFORE looking for its exit file: conmon writes the
        # file and then exits, so a dead monitor with no file really lost the exit code.
        monitor_alive = self._monitor_alive(container)
        return self._settle(container, monitor_alive, os.path.exists(f"{self.exit_dir}/{container.id}"))

    def _refresh_all(self, containers: builtins.list[Container]) -> builtins.list[Container]:
        """:meth:`refresh` for many: every monitor is asked first, then the exit files listed once."""
        alive = {c.id: self._monitor_alive(c) for c in containers if c.status in ACTIVE}
        self.monitors.keep_only(set(alive))
        if not alive:
            return containers
        try:
            exits = set(os.listdir(self.exit_dir))
        except FileNotFoundError:
            exits = set()
        return [self._settle(c, alive[c.id], c.id in exits) if c.status in ACTIVE else c for c in containers]

    def _settle(self, container: Container, monitor_alive: bool, exit_file_seen: bool) -> Container:
        """Record an exit seen as an exit file, or as a monitor gone without one."""
        from engine.cgroups.controller import host_driver

        if exit_file_seen:
            exit_file = self.exit_dir / container.id
            try:
                text = exit_file.read_text().strip()
            except FileNotFoundError:  # started again meanwhile (by another process): as it was read
                return container
            container.exit_code = int(text) if text.lstrip("-").isdigit() else 255
            container.finished_at = _mtime_iso(exit_file)
            oom = self.files(container.id).persist_dir / "oom"
            # The cgroup's own oom_kill counter (still there until crun deletes it) is exact;
            # conmon's oom file also appears when only a sibling under the tenant cap was killed.
            kills = host_driver().oom_kills(container.cgroup_path) if container.cgroup_path else None
            if (kills > 0) if kills is not None else oom.exists():
                container.status = "oom-killed"
                container.oom_killed_at = _mtime_iso(oom) if oom.exists() else container.finished_at
            else:
                container.status = "exited"
            self.store.save(container)
            self._record_exit(container)
        elif not monitor_alive:
            # This copy may predate the exit another thread or process recorded (which then
            # removed the exit file, and maybe the container): that record is the truth.
            try:
                current = self.store.load(container.id)
            except ContainerNotFound:
                return dataclasses.replace(container, status="exited")  # removed meanwhile
            if current.status not in ACTIVE or current.conmon_pid != container.conmon_pid:
                return current
            container.status = "exited"
            container.exit_code = container.exit_code if container.exit_code is not None else 255
            container.finished_at = container.finished_at or now_iso()
            self.store.save(container)
            self._record_exit(container)
        return container

    def _died_marker(self, cid: str) -> Path:
        return self.store.directory(cid) / "died"

    def _record_exit(self, container: Container) -> None:
        """Record ``die`` (and ``oom``) once per run, whichever process noticed the exit first.

        conmon, not the engine, sees the process end; every process that refreshes the
        record may notice it, so the first to create the marker (O_EXCL) records it.
        """
        try:
            os.close(os.open(self._died_marker(container.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:  # another process recorded it, or the container is being removed
            return
        if container.status == "oom-killed":
            self._event(container, "oom")
        self._event(container, "die", exitCode=str(container.exit_code))

    def _monitor_alive(self, container: Container) -> bool:
        return self.monitors.alive(container.id, container.conmon_pid)

    def get(self, ref: str | Container) -> Container:
        """The up-to-date record of the container named by id, id prefix or name."""
        cid = ref.id if isinstance(ref, Container) else self.store.find(ref).id
        return self.refresh(self.store.load(cid))

    def list(self, *, include_stopped: bool = False) -> list[Container]:
        """Containers, newest first; only running ones unless ``include_stopped``."""
        result = self._refresh_all(builtins.list(self.store.all()))
        if not include_stopped:
            result = [c for c in result if c.status in ALIVE]
        return sorted(result, key=lambda c: c.created, reverse=True)

    # ---- waiting and signals ----------------------------------------------------
    def wait(self, ref: str | Container, timeout: float | None = None) -> Container:
        """Block until the container is no longer running (or ``timeout`` passes)."""
        container = self.get(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = self._open_pidfd(container)
        try:
            while container.status in ACTIVE:
                if container.status == "created" and not self._monitor_alive(container):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                step = 0.5 if remaining is None else min(0.5, remaining)
                if pidfd is not None:
                    poller = select.poll()
                    poller.register(pidfd, select.POLLIN)
                    poller.poll(step * 1000)
                else:
                    time.sleep(min(step, 0.01))
                container = self.refresh(self.store.load(container.id))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return container

    def _open_pidfd(self, container: Container) -> int | None:
        if not self._monitor_alive(container):
            return None
        try:
            return os.pidfd_open(container.conmon_pid)
        except OSError:
            return None

    def kill(self, ref: str | Container, signal: str = "SIGKILL") -> Container:
        """Send ``signal`` to the container's main process. Conflict if it is not running."""
        container = self.get(ref)
        if container.status not in ALIVE:
            raise Conflict(f"container {container.name} is not running")
        name = normalize_signal(signal)
        self.runtime.kill(container.id, name)
        self._event(container, "kill", signal=_signal_number(name))
        self._thaw(container)
        return container

    def _thaw(self, container: Container) -> None:
        """Resume a paused container after a signal was sent to it, so the signal is acted on."""
        if container.status == "paused":
            with contextlib.suppress(RuntimeFailure, ContainerNotFound):
                self.runtime.resume(container.id)
            with contextlib.suppress(ContainerNotFound):
                self._set_status(container.id, "paused", "running")
            container.status = "running"

    def _set_status(self, cid: str, old: str, new: str) -> Container:
        """Change a live container's status from ``old`` to ``new`` (no-op if it is no longer ``old``)."""
        record = self.refresh(self.store.load(cid))
        if record.status == old:
            record.status = new
            self.store.save(record)
        return record

    def pause(self, ref: str | Container) -> Container:
        """Freeze every process of a running container (`crun pause`: the cgroup freezer).

        Raises Conflict when it is not running or already paused.
        """
        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.refresh(self.store.load(container.id))
            if container.status == "paused":
                raise Conflict(f"container {container.name} is already paused")
            if container.status != "running":
                raise Conflict(f"container {container.name} is not running")
            self.runtime.pause(container.id)
            container.status = "paused"
            self.store.save(container)
        self._event(container, "pause")
        return container

    def unpause(self, ref: str | Container) -> Container:
        """Thaw a paused container (`crun resume`). Raises Conflict when it is not paused."""
        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.refresh(self.store.load(container.id))
            if container.status != "paused":
                raise Conflict(f"container {container.name} is not paused")
            self.runtime.resume(container.id)
            container.status = "running"
            self.store.save(container)
        self._event(container, "unpause")
        return container

    def rename(self, ref: str | Container, new_name: str) -> Container:
        """Give a container a new name (unique on this engine root), also in its network's hosts files.

        Raises InvalidSpec for a bad name, Conflict when another container has it.
        """
        validate_name(new_name)
        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.store.load(container.id)
            old = container.name
            if new_name == old:
                return container
            self.store.reserve_name(new_name, container.id)
            container.name = new_name
            self.store.save(container)
            self.store.release_name(old, container.id)
            for attached in container.attachments():
                self.networks.rename_endpoint(container.id, attached["network"], new_name)
        self._event(container, "rename", oldName=old)
        return container

    def connect(self, ref: str | Container, join: NetworkJoin) -> Container:
        """Join a container (running or not) to one more network, live: a new interface, its names.

        Every hosts file on both sides follows at once; nothing restarts. Raises
        NetworkNotFound, InvalidSpec (bad alias; a container on ``none`` or
        ``host``), Conflict (already on it) or RuntimeFailure; on error nothing changes.
        """
        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.store.load(container.id)
            attachment = self.networks.connect(
                container.id,
                join,
                name=container.name,
                hostname=container.hostname,
                tenant=container.tenant,
                hosts_path=self.store.directory(container.id) / "etc" / "hosts",
            )
            self._set_attachments(container, [*container.attachments(), attachment.record()])
        return container

    def disconnect(self, ref: str | Container, network: str) -> Container:
        """Take a container off ``network`` (``bridge``: the tenant's default), live.

        It keeps its other networks; published ports on that network go. Raises
        NetworkNotFound, Conflict when it is not on it.
        """
        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.store.load(container.id)
            resolved = self.networks.resolve(network, container.tenant)
            gone = self.networks.disconnect(container.id, resolved, tenant=container.tenant)
            if gone.ports:
                container.ports = []  # they were published from the network that went
            self._set_attachments(container, [a for a in container.attachments() if a["network"] != resolved])
        return container

    def _set_attachments(self, container: Container, attachments: builtins.list[dict[str, Any]]) -> None:
        """Record ``attachments`` (first one: the compat fields) and save."""
        attachments.sort(key=lambda a: int(a["interface"].removeprefix("eth") or 0))
        none: dict[str, Any] = {"network": "none", "ip_address": "", "aliases": []}
        first = attachments[0] if attachments else none
        container.networks = attachments
        container.network = first["network"]
        container.ip_address = first["ip_address"]
        container.network_aliases = list(first["aliases"])
        self.store.save(container)

    def top(self, ref: str | Container) -> builtins.list[ProcessRow]:
        """The processes in a running container's cgroup, as the host sees them (host pids).

        Raises Conflict when the container is not running.
        """
        from engine.runtime.procfs import cgroup_pids, process_rows

        container = self.get(ref)
        if container.status not in ALIVE:
            raise Conflict(f"container {container.name} is not running")
        cgroup = container.cgroup_path or container_cgroup(self.instance, container.tenant, container.id)
        return process_rows(cgroup_pids([root / cgroup.lstrip("/") for root in self._cgroup_roots()]))

    def stop(self, ref: str | Container, timeout: int | None = None) -> Container:
        """SIGTERM (or the stop signal), then SIGKILL after ``timeout`` seconds."""
        container = self.get(ref)
        if container.status not in ALIVE:
            return container
        grace = container.stop_timeout if timeout is None else timeout
        with contextlib.suppress(RuntimeFailure):
            self.runtime.kill(container.id, container.stop_signal)
            self._event(container, "kill", signal=_signal_number(container.stop_signal))
        self._thaw(container)
        container = self.wait(container, timeout=grace)
        if container.status in ALIVE:
            with contextlib.suppress(RuntimeFailure):
                self.runtime.kill(container.id, "SIGKILL", all_processes=True)
                self._event(container, "kill", signal=_signal_number("SIGKILL"))
            container = self.wait(container, timeout=KILL_GRACE_SECONDS)
        self._event(container, "stop")
        return container

    def restart(self, ref: str | Container, timeout: int | None = None) -> Container:
        """Stop (if running) and start again."""
        container = self.stop(ref, timeout)
        container = self.start(container)
        self._event(container, "restart")
        return container

    def update(self, ref: str | Container, resources: Resources) -> Container:
        """Change a container's limits: at once when it runs (`crun update`), and for later starts.

        Limits that ``resources`` leaves unset keep their values. Raises
        InvalidSpec/QuotaExceeded for limits the host or the tenant's quota
        cannot allow and RuntimeFailure when crun refuses (nothing changes then).
        """
        from engine.cgroups.resources import oci_resources

        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.refresh(self.store.load(container.id))
            new = self.quotas.check_container(container.tenant, container.resources.merged(resources))
            if container.status in ACTIVE:
                self.runtime.update(container.id, oci_resources(new))
            config_file = self.store.directory(container.id) / "config.json"
            config = json.loads(config_file.read_bytes())
            devices = config["linux"]["resources"].get("devices", [])
            config["linux"]["resources"] = {**oci_resources(new), "devices": devices}
            atomic_write_json(config_file, config, compact=True)
            container.resources = new
            self.store.save(container)
        return container

    # ---- recovery -----------------------------------------------------------------
    def recover(self) -> builtins.list[str]:
        """Clean up what creates interrupted by a crash left behind; returns what was removed.

        A create that died between reserving the name and saving the record
        leaves a name with no container, or a bundle (maybe with a mounted
        rootfs and secrets tmpfs, crun state, a cgroup and a network endpoint)
        with no record. A create holds its container's lock from before it
        reserves the name until the record is saved (or its undo is done), and
        a process's flocks die with it: so an entry is a leftover exactly when
        its lock is free, however young it is, and a create running right now
        in another process is never disturbed.
        """
        removed: builtins.list[str] = []
        for name_file in list(self.paths.names.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                cid = name_file.read_text().strip()
                with self.store.lock_if_abandoned(cid) as abandoned:
                    if abandoned and not (self.store.directory(cid) / "container.json").exists():
                        self.store.release_name(name_file.name, cid)
                        if not self.store.directory(cid).exists():
                            self.store.forget_lock(cid)
                        removed.append(f"name {name_file.name}")
        for bundle in list(self.paths.containers.iterdir()):
            cid = bundle.name
            with self.store.lock_if_abandoned(cid) as abandoned:
                if abandoned and not (bundle / "container.json").exists() and self._remove_bundle(cid):
                    self.store.forget_lock(cid)
                    removed.append(f"bundle {cid[:12]}")
        return removed

    def _remove_bundle(self, cid: str) -> bool:
        """Undo what an interrupted create of ``cid`` made (its bundle has no record); whether its
        directory could go (nothing stays mounted below it)."""
        from engine.runtime.secrets import unmount_secrets

        bundle = self.store.directory(cid)
        self.runtime.delete(cid, force=True)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / cid).unlink()
        self.networks.release(cid, self.networks.networks_of(cid))
        with contextlib.suppress(OSError, ValueError, KeyError):
            config = json.loads((bundle / "config.json").read_bytes())
            tenant = config["annotations"]["org.hostpanel.tenant"]
            self.quotas.release(tenant, config["linux"]["cgroupsPath"])
            self.tenant_disks.release(tenant, cid)
        with contextlib.suppress(RuntimeFailure):
            unmount_secrets(self.store.secrets_dir(cid))
        mounts.unmount(bundle / "rootfs")
        if mounts.is_mountpoint(bundle / "rootfs") or mounts.is_mountpoint(self.store.secrets_dir(cid)):
            return False
        shutil.rmtree(bundle, ignore_errors=True)
        return True

    # ---- remove -----------------------------------------------------------------
    def remove(self, ref: str | Container, *, force: bool = False) -> Container:
        """Remove a container and everything it owns; Conflict if running without ``force``.

        Its runtime state, cgroup, mounts, network endpoints and volume uses go before this
        returns; its directory (bundle, overlay upper and work, log) is renamed into the trash
        and deleted off the caller's path (engine.runtime.trash). Raises RuntimeFailure when
        something stays mounted below its directory.
        """
        from engine.runtime.secrets import unmount_secrets

        container = self.get(ref)
        with self.store.lock(container.id):
            container = self.refresh(self.store.load(container.id))
            if container.status in ALIVE:
                if not force:
                    raise Conflict(f"container {container.name} is running; stop it first or use -f")
                with contextlib.suppress(RuntimeFailure):
                    self.runtime.kill(container.id, "SIGKILL", all_processes=True)
                    self._event(container, "kill", signal=_signal_number("SIGKILL"))
                if container.status == "paused":
                    with contextlib.suppress(RuntimeFailure, ContainerNotFound):
                        self.runtime.resume(container.id)
                container = self.wait(container, timeout=KILL_GRACE_SECONDS)
            self._cleanup_runtime(container)
            bundle = self.store.directory(container.id)
            mounts.unmount(bundle / "rootfs")
            unmount_secrets(self.store.secrets_dir(container.id))
            # Its directory goes to the trash below, which must never hold a mount (a delete would
            # reach into it): whatever else is still mounted below it goes too, deepest first.
            left = mounts.mounted_under(bundle)
            for point in left:
                mounts.unmount(point)
            still = mounts.mounted_under(bundle) if left else []
            if still:
                raise RuntimeFailure(f"cannot remove {container.name}: {still[0]} is still mounted")
            self.networks.release(container.id, [a["network"] for a in container.attachments()])
            self.volumes.detach(container.mounts, container.id)
            self.store.delete(container)  # renamed into the trash: gone and its name free from here
            self.monitors.forget(container.id)
            self.tenant_disks.release(container.tenant, container.id)
        self._event(container, "destroy")
        return container

    def _cleanup_runtime(self, container: Container) -> None:
        cgroup = container.cgroup_path or container_cgroup(self.instance, container.tenant, container.id)
        leaves = [root / cgroup.lstrip("/") for root in self._cgroup_roots()]
        if container.status in ACTIVE or not self.runtime.forget_stopped(container.id, leaves):
            self.runtime.delete(container.id, force=True)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / container.id).unlink()
        self.quotas.release(container.tenant, cgroup)

    # ---- exec -------------------------------------------------------------------
    def exec(
        self,
        ref: str | Container,
        spec: ExecSpec,
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        tty: bool = False,
        console_socket: Path | None = None,
        pid_file: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``spec`` inside the running container; returns the process (wait() for the code).

        ``console_socket`` and ``pid_file`` go to crun (see OciRuntime.exec_command).
        Raises Conflict when the container is not running, InvalidSpec for bad input.
        """
        from engine.runtime.users import resolve_user

        container = self.get(ref)
        if container.status == "paused":
            raise Conflict(f"container {container.name} is paused; unpause it first")
        if container.status != "running":
            raise Conflict(f"container {container.name} is not running; start it first")
        if not spec.command:
            raise InvalidSpec("exec needs a command")
        validate_env(spec.env)
        rootfs = self.store.directory(container.id) / "rootfs"
        user = resolve_user(rootfs, spec.user if spec.user is not None else container.user)
        env = merge_env(container.env, (f"HOME={user.home}",) if spec.user is not None else (), spec.env)
        cwd = validate_workdir(spec.workdir) if spec.workdir else container.workdir
        process = ProcessSpec(
            args=spec.command,
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cwd=cwd,
            uid=user.uid,
            gid=user.gid,
            additional_gids=user.additional_gids,
            terminal=tty,
        )
        # The process spec reaches crun through a pipe, so no file is left behind.
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, json.dumps(process_json(process)).encode())
        finally:
            os.close(write_end)
        command = " ".join(spec.command)
        self._event(container, f"exec_create: {command}")
        try:
            with self.quotas.ready(container.tenant):  # the quota sits above it before it runs
                popen = subprocess.Popen(
                    self.runtime.exec_command(
                        container.id,
                        Path(f"/dev/fd/{read_end}"),
                        tty=tty,
                        console_socket=console_socket,
                        pid_file=pid_file,
                    ),
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(read_end,),
                )
        finally:
            os.close(read_end)
        self._event(container, f"exec_start: {command}")
        return popen

    # ---- logs -------------------------------------------------------------------
    def logs(
        self,
        ref: str | Container,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> Iterator[k8s_file.LogLine]:
        """The container's output lines; with ``follow``, new ones until the container stops.

        Output without a final newline (``printf ok``) is shown as a last line, like
        ``docker logs``: at once without ``follow``, when the container stops with it.
        """
        container = self.get(ref)
        log = self.log_path(container)
        start_offset = k8s_file.complete_size(log)  # a record being written is the follower's
        assembler = k8s_file.LineAssembler()
        lines = k8s_file.read_lines(log, container.log_max_files, start_offset, assembler)
        if not follow:
            lines = itertools.chain(lines, _flushed(assembler))
        yield from k8s_file.select_lines(lines, tail, since)
        if follow:

            def done() -> bool:
                return self.refresh(self.store.load(container.id)).status not in ACTIVE

            # Between reads, wait on the monitor's pidfd: its exit ends the follow at once, not
            # up to a poll interval later (what `hpctl run --rm` waits for after the last line).
            pidfd = self._open_pidfd(container)
            woken = False

            def nap(seconds: float) -> None:
                nonlocal woken
                if pidfd is None or woken:
                    time.sleep(seconds)
                    return
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                woken = bool(poller.poll(seconds * 1000))

            try:
                yield from k8s_file.follow(
                    log, start_offset, done, max_files=container.log_max_files, assembler=assembler, sleep=nap
                )
            finally:
                if pidfd is not None:
                    os.close(pidfd)

    def rotate_logs(self) -> int:
        """Rotate every running container's log that is over its size; returns how many.

        Every file conmon writes has a second name (:func:`engine.logs.k8s_file.hold`): its cap
        counts across these rotations, and the files it replaced at the cap are rotated in here
        (not lost with their lines).
        """
        rotated = 0
        for container in self.list():
            files = self.files(container.id)
            with contextlib.suppress(FileNotFoundError):
                k8s_file.promote_held(files.log, container.log_max_files)
                k8s_file.hold(files.log)
                if files.log.stat().st_size >= container.log_max_size and k8s_file.rotate(
                    files.log, container.log_max_files
                ):
                    self.runtime.reopen_log(files)  # conmon opens the file hold() prepared
                    rotated += 1
                k8s_file.hold(files.log)
        return rotated

    def image_ids_in_use(self) -> set[str]:
        """Ids of the images any container (in any state) was created from."""
        return {c.image_id for c in self.store.all()}


def _signal_number(name: str) -> str:
    """'SIGTERM' as '15', how Docker's kill events carry the signal."""
    try:
        return str(int(signal_module.Signals[normalize_signal(name)]))
    except (KeyError, InvalidSpec):
        return name


def _read_pid(path: Path) -> int:
    for _ in range(200):
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text().strip())
        time.sleep(0.001)
    return 0


def _flushed(assembler: k8s_file.LineAssembler) -> Iterator[k8s_file.LogLine]:
    """The assembler's unfinished lines, taken only once the lines before them were read."""
    yield from assembler.flush()
