"""The engine facade: one object per (root, instance) that the CLI and the host agent use."""

from __future__ import annotations

import builtins
import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from engine.errors import Conflict, InvalidSpec, NotFound
from engine.images.store import ImageStore
from engine.paths import EnginePaths, default_instance, default_root, validate_instance
from engine.runtime.containers import ContainerManager

# Only what every command needs is imported here; the rest (build, registries, usage,
# terminals, copies, namespaces) is imported by the methods that use it, so a process
# that lists containers stays lean (tests/engine/unit/test_cli_imports.py).
if TYPE_CHECKING:
    import subprocess
    from datetime import datetime

    from engine.build.cache import BuildCache
    from engine.build.model import BuildOptions, BuildResult, OutputCallback
    from engine.cgroups.resources import Resources
    from engine.cgroups.usage import ContainerStats, TenantReport, Usage, UsageMeter
    from engine.events import Event, EventFilter
    from engine.images.digest import Readable
    from engine.images.model import Image
    from engine.logs.k8s_file import LogLine
    from engine.networks.manager import NetworkManager, OverlayOptions
    from engine.networks.model import Network, NetworkJoin, RemoteEndpoint
    from engine.purge import PurgeReport
    from engine.registry import AuthFile, Credentials, RemoteRef, TransferReport
    from engine.registry.progress import ProgressCallback
    from engine.runtime.attach import AttachSession
    from engine.runtime.copy import PathStat, Writable
    from engine.runtime.model import Container, ContainerSpec, ExecSpec
    from engine.runtime.procfs import ProcessRow
    from engine.runtime.pty_exec import PtySession
    from engine.runtime.tenant_disks import TenantDisk
    from engine.volumes.manager import VolumeManager
    from engine.volumes.model import TenantVolumeUsage, Volume, VolumeUsage

T = TypeVar("T")


@functools.cache
def _cgroup_hierarchies() -> tuple[Path, ...]:
    """The cgroup hierarchy roots of this host (mounts do not change while we run)."""
    from engine.cgroups.layout import detect_cgroup_layout

    return tuple(Path(p) for p in detect_cgroup_layout().hierarchy_dirs())


class Engine:
    """A per-host container engine instance.

    ``root`` holds every file the engine owns; ``instance`` names its cgroups,
    crun state and firewall tables so several instances coexist on one machine.
    Every method raises a subclass of :class:`engine.errors.EngineError` on
    bad input or a failed operation.
    """

    def __init__(self, root: Path | str | None = None, instance: str | None = None) -> None:
        self.paths = EnginePaths(Path(root) if root is not None else default_root())
        self.instance = validate_instance(instance or default_instance())
        self.paths.ensure()
        self.images = ImageStore(self.paths)
        self.containers = ContainerManager(self.paths, self.instance, self.images, _cgroup_hierarchies)
        # What a crash or a killed process left in the trash is deleted on a worker thread; this
        # only reads the trash directory (bounded), so opening an engine stays cheap.
        self.containers.store.trash.sweep()
        # The build cache lives as long as the images built from it (see engine.build.cache).
        self.images.gc_hooks.append(self._build_cache_gc_keep)
        # Steps of purge_tenant for other per-tenant state (e.g. per-tenant storage): each takes the
        # tenant's name, is idempotent, and runs after the tenant's containers and volumes are gone.

    @property
    def networks(self) -> NetworkManager:
        """Tenant networks of this engine (see engine.networks.manager)."""
        return self.containers.networks

    @functools.cached_property
    def usage(self) -> UsageMeter:
        """Live cgroup readings and accumulated billing usage (see engine.cgroups.usage)."""
        from engine.cgroups.controller import host_driver
        from engine.cgroups.usage import UsageMeter

        return UsageMeter(self.paths, host_driver)

    @functools.cached_property
    def build_cache(self) -> BuildCache:
        """The build cache of this root (see engine.build.cache), made on first use."""
        from engine.build.cache import BuildCache

        return BuildCache(self.paths.root / "build-cache", self.images.blobs)

    def _build_cache_gc_keep(self, image_ids: set[str]) -> set[str]:
        """The image store's GC hook for the build cache (see BuildCache.gc_keep)."""
        return self.build_cache.gc_keep(image_ids)

    # ---- containers -------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Container:
        """Create a container (not started). See ContainerManager.create."""
        return self.containers.create(spec)

    def run(self, spec: ContainerSpec) -> Container:
        """Create and start a container; on a failed start nothing is left behind."""
        container = self.containers.create(spec)
        try:
            return self.containers.start(container)
        except BaseException:
            self.containers.remove(container, force=True)
            raise

    def start(self, ref: str) -> Container:
        """Start a created or stopped container."""
        return self.containers.start(ref)

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        """Stop with the stop signal, then SIGKILL after ``timeout`` seconds."""
        return self.containers.stop(ref, timeout)

    def kill(self, ref: str, signal: str = "SIGKILL") -> Container:
        """Send a signal to a running container."""
        return self.containers.kill(ref, signal)

    def restart(self, ref: str, timeout: int | None = None) -> Container:
        """Stop then start a container."""
        return self.containers.restart(ref, timeout)

    def remove(self, ref: str, *, force: bool = False) -> Container:
        """Remove a container; ``force`` kills it first if it runs.

        Its usage since the last sample is added to its tenant's total first.
        """
        self.usage.sample([self.containers.get(ref)], final=True)
        return self.containers.remove(ref, force=force)

    def wait(self, ref: str, timeout: float | None = None) -> Container:
        """Wait until a container stops; returns its final record."""
        return self.containers.wait(ref, timeout)

    def pause(self, ref: str) -> Container:
        """Freeze a running container's processes; Conflict if it is not running or already paused."""
        return self.containers.pause(ref)

    def unpause(self, ref: str) -> Container:
        """Thaw a paused container; Conflict if it is not paused."""
        return self.containers.unpause(ref)

    def rename(self, ref: str, new_name: str) -> Container:
        """Rename a container; InvalidSpec for a bad name, Conflict when the name is taken."""
        return self.containers.rename(ref, new_name)

    def connect(self, ref: str, join: NetworkJoin) -> Container:
        """Join container ``ref`` to one more network, live (see ContainerManager.connect)."""
        return self.containers.connect(ref, join)

    def disconnect(self, ref: str, network: str) -> Container:
        """Take container ``ref`` off ``network``, live (see ContainerManager.disconnect)."""
        return self.containers.disconnect(ref, network)

    def top(self, ref: str) -> builtins.list[ProcessRow]:
        """The processes of a running container (`ps -ef` columns, host pids); Conflict if stopped."""
        return self.containers.top(ref)

    def events(
        self,
        event_filter: EventFilter | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        follow: bool = False,
        tenant: str | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Event]:
        """Recorded events (since/until in Unix nanoseconds), oldest first; see engine.events.

        ``tenant`` confines them to that tenant's objects, whatever the filter says. With
        ``follow`` new events are yielded as any process records them, until ``until``
        passes or ``stop()`` is true.
        """
        from engine.events import EventFilter

        terms = dict(event_filter.terms) if event_filter is not None else {}
        if tenant is not None:
            terms["tenant"] = frozenset({tenant})
        return self.containers.events.read(
            EventFilter(terms), since=since, until=until, follow=follow, stop=stop
        )

    def get(self, ref: str) -> Container:
        """A container by name, id or id prefix."""
        return self.containers.get(ref)

    def list(self, *, all: bool = False) -> list[Container]:
        """Running containers, or every container with ``all``."""
        return self.containers.list(include_stopped=all)

    def in_network_namespace(self, ref: str, fn: Callable[[], T], *, timeout: float) -> T:
        """Return ``fn()`` run in a thread inside running container ``ref``'s network namespace.

        The seam for health probes (engine/runtime/netns.py): a connect made by
        ``fn`` leaves from the container's side, so ``127.0.0.1`` is the
        container and the host's own services are never reached. The
        namespace is the container's bind-mounted one (bridge networks) or its
        init process's (``/proc/<pid>/ns/net``); the host's namespace (an
        operator's ``--network host``) is refused with InvalidSpec. Raises
        ContainerNotFound, Conflict if it does not run, NetnsTimeout past ``timeout``.
        """
        from engine.runtime.netns import run_in_netns
        from engine.runtime.oci_spec import HOST_NETNS

        container = self.containers.get(ref)
        if not container.is_running or container.pid <= 0:
            raise Conflict(f"container {container.name} is not running")
        if container.netns_path == HOST_NETNS:
            raise InvalidSpec(f"container {container.name} shares the host's network namespace")
        netns = Path(container.netns_path or f"/proc/{container.pid}/ns/net")
        return run_in_netns(netns, fn, timeout=timeout)

    def exec(
        self,
        ref: str,
        spec: ExecSpec,
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        tty: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a process in a running container; wait() on the result for its exit code."""
        return self.containers.exec(ref, spec, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)

    def exec_pty(self, ref: str, spec: ExecSpec, *, rows: int = 24, cols: int = 80) -> PtySession:
        """Start a process in a running container on its own terminal (see pty_exec.start_pty_exec)."""
        from engine.runtime.pty_exec import start_pty_exec

        return start_pty_exec(self.containers, ref, spec, rows=rows, cols=cols)

    def attach(self, ref: str) -> AttachSession:
        """Attach to a container's main process: output, stdin, terminal size (see engine.runtime.attach)."""
        from engine.runtime import attach

        return attach.attach(self.containers, ref)

    def resize(self, ref: str, rows: int, cols: int) -> None:
        """Set the terminal size of a container created with a TTY (see engine.runtime.attach)."""
        from engine.runtime import attach

        attach.resize(self.containers, ref, rows, cols)

    def stat_path(self, ref: str, path: str) -> PathStat:
        """Stat a path inside a container (see engine.runtime.copy.stat_path)."""
        from engine.runtime import copy

        return copy.stat_path(self.containers, ref, path)

    def copy_from(self, ref: str, path: str, out: Writable, *, name: str | None = None) -> PathStat:
        """Write a container's path to ``out`` as a tar stream (see engine.runtime.copy.export_path)."""
        from engine.runtime import copy

        return copy.export_path(self.containers, ref, path, out, name=name)

    def copy_to(
        self,
        ref: str,
        path: str,
        stream: Readable,
        *,
        keep_owners: bool = False,
        no_overwrite_dir_non_dir: bool = False,
    ) -> int:
        """Extract a tar stream into a container's directory (see engine.runtime.copy.import_archive)."""
        from engine.runtime import copy

        return copy.import_archive(
            self.containers,
            ref,
            path,
            stream,
            keep_owners=keep_owners,
            no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
        )

    def logs(
        self, ref: str, *, tail: int | None = None, since: datetime | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        """A container's output lines (see ContainerManager.logs)."""
        return self.containers.logs(ref, tail=tail, since=since, follow=follow)

    def recover(self) -> builtins.list[str]:
        """Clean up after creates that a crash interrupted (see ContainerManager.recover)."""
        return self.containers.recover()

    def rotate_logs(self) -> int:
        """Rotate the logs of running containers that reached their max size."""
        return self.containers.rotate_logs()

    # ---- resources: limits, stats, usage ------------------------------------------
    def update(self, ref: str, resources: Resources) -> Container:
        """Change a container's limits, live if it runs (see ContainerManager.update)."""
        return self.containers.update(ref, resources)

    def stats(self, refs: Sequence[str] = ()) -> Sequence[ContainerStats]:
        """One reading of the cgroup counters of the named (default: all running) containers.

        Raises ContainerNotFound for an unknown name.
        """
        containers = [self.get(r) for r in refs] if refs else self.list()
        return self.usage.stats(containers)

    def tenant_quota(self, tenant: str) -> Resources:
        """A tenant's quota (unlimited when none is set); InvalidSpec for a bad name."""
        return self.containers.quotas.get(tenant)

    def set_tenant_storage(self, tenant: str, size: int) -> TenantDisk:
        """Give a tenant a root file system disk of ``size`` bytes, or grow it (runtime.tenant_disks)."""
        return self.containers.tenant_disks.set(tenant, size)

    def tenant_storage(self, tenant: str) -> TenantDisk:
        """A tenant's root file system disk (size, bytes used); NotFound when it has none."""
        return self.containers.tenant_disks.show(tenant)

    def remove_tenant_storage(self, tenant: str) -> None:
        """Delete a tenant's root file system disk (tenant purge); Conflict while it has containers here."""
        self.containers.tenant_disks.remove(tenant)

    def require_tenant_limits(self) -> None:
        """Refuse to create, start or exec into a container of a tenant with no quota on this host.

        The host agent turns this on: every tenant's quota comes from the panel, and nothing of a
        tenant may run above a tenant cgroup without it (LimitsNotSet otherwise).
        """
        self.containers.quotas.required = True

    def set_tenant_quota(self, tenant: str, quota: Resources) -> Resources:
        """Store a tenant's quota and apply it live to its containers (see TenantQuotas.set)."""
        return self.containers.quotas.set(tenant, quota)

    def tenant_egress_allow(self, tenant: str) -> tuple[str, ...]:
        """Ranges a tenant's containers may reach besides the internet (see NetworkManager.egress_allow)."""
        return self.networks.egress_allow(tenant)

    def set_tenant_egress_allow(self, tenant: str, cidrs: Sequence[str]) -> tuple[str, ...]:
        """Replace a tenant's egress allow-list, live (see NetworkManager.set_egress_allow)."""
        return self.networks.set_egress_allow(tenant, cidrs)

    def tenant_usage(self, tenant: str) -> TenantReport:
        """A tenant's quota, live totals (its cgroup) and accumulated billing usage."""
        from engine.cgroups.usage import TenantReport

        quota = self.tenant_quota(tenant)
        running = [c for c in self.list() if c.tenant == tenant]
        live = self.usage.tenant_stats(self.containers.quotas.cgroup(tenant))
        return TenantReport(tenant, quota, live, self.usage.tenant_usage(tenant), [c.id for c in running])

    def container_usage(self, ref: str) -> Usage:
        """A container's accumulated billing usage."""
        return self.usage.container_usage(self.get(ref).id)

    def sample_usage(self) -> int:
        """Accumulate billing usage of every running container; returns how many were sampled."""
        return self.usage.sample(self.list())

    # ---- tenants ----------------------------------------------------------------
    def purge_tenant(self, tenant: str) -> PurgeReport:
        """Remove everything this engine holds for ``tenant``, so a new tenant of that name starts empty.

        In order: its containers (running ones killed, build RUN containers too), volumes and
        networks, its root file system disk and egress allow-list, its images (the names it owns
        and its holds) and build cache, its cgroups and quota, its usage records and its events
        (kept for the operator, never shown to a later tenant of that name), the layers
        unpacked for its uid range, and the uid range itself (retired, never handed out again).
        Idempotent: after an error, purging again finishes the job. Raises InvalidSpec for a bad
        name, Conflict while a process still runs in the tenant's cgroup, or another EngineError from a step.
        """
        from engine.purge import PurgeReport
        from engine.runtime.idmap import validate_tenant

        validate_tenant(tenant)
        report = PurgeReport(tenant)
        # Each item may vanish meanwhile (the agent's reconcile removes the tenant's containers too).
        for container in self.list(all=True):
            if container.tenant == tenant:
                with contextlib.suppress(NotFound):
                    self.remove(container.id, force=True)
                    report.containers.append(container.name)
        for volume in self.volume_list(tenant):
            with contextlib.suppress(NotFound):
                self.volume_remove(volume.name, force=True)
                report.volumes.append(volume.name)
        for network in self.network_list(tenant):
            with contextlib.suppress(NotFound):
                self.network_remove(network.name)
                report.networks.append(network.name)
        self.remove_tenant_storage(tenant)
        if self.tenant_egress_allow(tenant):
            self.set_tenant_egress_allow(tenant, ())
        report.cache_entries = self.build_cache.forget(tenant)
        dropped = self.images.forget_tenant(tenant, in_use=self.image_ids_in_use())
        report.images += [f"Untagged: {tag}" for tag in dropped]
        self.containers.quotas.forget(tenant)
        self.usage.forget_tenant(tenant)
        self.containers.events.forget_tenant(tenant)
        uid_range = self.containers.id_ranges.all().get(tenant)
        if uid_range is not None:
            report.unpacked_layers = self.images.drop_unpacked(uid_range.base)
            self.containers.id_ranges.retire(tenant)
            report.uid_base = uid_range.base
        return report

    # ---- volumes ----------------------------------------------------------------
    @property
    def volumes(self) -> VolumeManager:
        """Named volumes of this engine root (see engine.volumes.manager)."""
        return self.containers.volumes

    def volume_create(
        self,
        name: str,
        *,
        tenant: str = "default",
        size: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> Volume:
        """Create a volume (``size`` in bytes caps it; None: a plain directory, no cap).

        Raises InvalidSpec, Conflict (name taken) or RuntimeFailure; nothing is left on error.
        """
        return self.volumes.create(name, tenant=tenant, size=size, labels=labels)

    def volume(self, name: str) -> Volume:
        """A volume's record; VolumeNotFound if there is none."""
        return self.volumes.get(name)

    def volume_list(self, tenant: str | None = None) -> builtins.list[Volume]:
        """Every volume, or those of ``tenant``."""
        return self.volumes.list(tenant)

    def volume_remove(self, name: str, *, force: bool = False) -> Volume:
        """Remove a volume and its data; Conflict if containers use it and not ``force``."""
        return self.volumes.remove(name, force=force)

    def volume_prune(self, tenant: str | None = None) -> builtins.list[str]:
        """Remove the volumes no container uses; returns their names."""
        return self.volumes.prune(tenant)

    def volume_usage(self, tenant: str | None = None) -> builtins.list[VolumeUsage]:
        """Disk used by each volume (of ``tenant``): size cap, bytes used, bytes on the host's disk."""
        return self.volumes.usage_all(tenant)

    def tenant_volume_usage(self, tenant: str) -> TenantVolumeUsage:
        """A tenant's volume totals, for the billing sampler."""
        return self.volumes.tenant_usage(tenant)

    def volume_export(self, name: str, out: IO[bytes]) -> int:
        """Write a volume's content as a tar to ``out``; VolumeNotFound if there is none."""
        return self.volumes.export(name, out)

    def volume_import(
        self, name: str, stream: IO[bytes], *, tenant: str = "default", size: int | None = None
    ) -> Volume:
        """Restore a tar into a new (or empty, unused) volume; see VolumeManager.import_."""
        return self.volumes.import_(name, stream, tenant=tenant, size=size)

    # ---- networks ---------------------------------------------------------------
    def network_create(
        self,
        name: str,
        *,
        tenant: str = "default",
        subnet: str | None = None,
        driver: str = "bridge",
        internal: bool = False,
        overlay: OverlayOptions | None = None,
        labels: dict[str, str] | None = None,
    ) -> Network:
        """Create a tenant network. See NetworkManager.create for what it raises."""
        return self.networks.create(
            name,
            tenant=tenant,
            subnet=subnet,
            driver=driver,
            internal=internal,
            overlay=overlay,
            labels=labels,
        )

    def network_ensure_overlay(
        self,
        name: str,
        *,
        tenant: str,
        subnet: str,
        vni: int,
        peers: Sequence[str],
        underlay_ip: str | None = None,
        ip_range: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Network:
        """Create or update an overlay network in place. See NetworkManager.ensure_overlay."""
        return self.networks.ensure_overlay(
            name,
            tenant=tenant,
            subnet=subnet,
            vni=vni,
            peers=peers,
            underlay_ip=underlay_ip,
            ip_range=ip_range,
            labels=labels,
        )

    def network_set_remote(self, name: str, entries: Mapping[str, str] | Sequence[RemoteEndpoint]) -> None:
        """Containers of an overlay network on other hosts ({name: address} or RemoteEndpoints),
        written into /etc/hosts of its containers here, in place."""
        self.networks.set_remote_endpoints(name, entries)

    def egress_protected(self) -> dict[str, tuple[str, ...]]:
        """Protected hosts and their open ports (see NetworkManager.set_egress_protected)."""
        return self.networks.egress_protected()

    def set_egress_protected(self, entries: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """Replace the protected hosts ({address: ["8080/tcp", ...]}), live."""
        return self.networks.set_egress_protected(entries)

    def network(self, name: str) -> Network:
        """A network by name; NotFound if there is none."""
        return self.networks.get(name)

    def network_list(self, tenant: str | None = None) -> builtins.list[Network]:
        """Every network (of ``tenant``, if given)."""
        return self.networks.all(tenant)

    def network_remove(self, name: str) -> Network:
        """Remove an unused network; Conflict while a container uses it."""
        return self.networks.remove(name)

    def network_teardown(self) -> builtins.list[str]:
        """Remove this instance's namespaces, links and nft tables (operator clean-up)."""
        return self.networks.teardown()

    # ---- images -----------------------------------------------------------------
    def image_ids_in_use(self) -> set[str]:
        """Ids of images that some container was created from."""
        return self.containers.image_ids_in_use()

    def image(self, reference: str, *, tenant: str | None = None) -> Image:
        """An image by reference or id (for ``tenant``: only its own images and the base set)."""
        return self.images.resolve(reference, tenant=tenant)

    def build(self, options: BuildOptions, on_output: OutputCallback | None = None) -> BuildResult:
        """Build an image from a Dockerfile and tag it (see engine.build.builder).

        ``on_output(stream, text)`` gets step headers, cache hits and RUN output as it comes.
        Raises InvalidSpec (bad Dockerfile, context or options, with the line), BuildFailed (a
        RUN failed: its output and exit code), QuotaExceeded (a RUN went over the tenant's quota).
        """
        from engine.build.builder import Builder  # loads the Dockerfile parser only when building
        from engine.build.model import ignore_output

        result = Builder(self, self.build_cache, options, on_output or ignore_output).run()
        self.images.event("build", result.image.id, options.tag, options.tenant)
        return result

    # ---- registries -------------------------------------------------------------
    @property
    def auth_file(self) -> AuthFile:
        """The registry logins of this engine (``<root>/auth.json``, written by `hpctl login`)."""
        from engine.registry import AuthFile
        from engine.registry.credentials import AUTH_FILE_NAME

        return AuthFile(self.paths.root / AUTH_FILE_NAME)

    def pull(
        self,
        reference: str | RemoteRef,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        progress: ProgressCallback | None = None,
        tag_as: str | None = None,
        tenant: str | None = None,
    ) -> TransferReport:
        """Pull an image from a registry, fetching only the blobs this host lacks (see engine.registry).

        For ``tenant`` the local name must be in its namespace (``tag_as``, or the reference as written).
        """
        from engine.registry import pull as registry_pull
        from engine.registry.sources import SOURCES_FILE_NAME, BlobSources

        report = registry_pull(
            self.images,
            reference,
            credentials=credentials,
            insecure=insecure,
            progress=progress,
            auth_file=self.auth_file,
            tag_as=tag_as,
            tenant=tenant,
            sources=BlobSources(self.paths.root / SOURCES_FILE_NAME),
        )
        self.images.event("pull", report.image_id, tag_as or report.reference, tenant)
        return report

    def push(
        self,
        local_ref: str,
        remote_ref: str | RemoteRef | None = None,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        progress: ProgressCallback | None = None,
        tenant: str | None = None,
    ) -> TransferReport:
        """Push a local image to a registry, uploading only the blobs it lacks (see engine.registry).

        For ``tenant`` the image must be one it can read (ImageNotFound otherwise); the push
        event is its own.
        """
        if tenant is not None:
            self.images.resolve(local_ref, tenant=tenant)
        from engine.registry import push as registry_push
        from engine.registry.sources import SOURCES_FILE_NAME, BlobSources

        report = registry_push(
            self.images,
            local_ref,
            remote_ref,
            credentials=credentials,
            insecure=insecure,
            progress=progress,
            auth_file=self.auth_file,
            sources=BlobSources(self.paths.root / SOURCES_FILE_NAME),
        )
        self.images.event("push", report.image_id, report.reference, tenant)
        return report
