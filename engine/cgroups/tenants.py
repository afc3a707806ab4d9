"""Tenant quotas: stored on disk, enforced on the tenant's cgroup above all its containers.

A tenant's quota lives in ``<root>/tenants/quotas/<tenant>.json``. Its cgroup
``/<instance>/tenants/<tenant>`` exists only while the tenant has containers:
the engine creates it (with the quota written) right before crun creates a
container below it, and removes it with the tenant's last container. The
quota on disk is the truth; it is applied again each time the cgroup is
made, and `hpctl tenant quota set` applies it at once to a cgroup that
exists, so running containers feel the change immediately.

A per-tenant lock (``<root>/run/locks/tenant-<tenant>``) orders "make the
tenant cgroup and create a container in it" against "remove the empty
tenant cgroup", so crun never creates the parent itself (without limits).

An engine driven by the panel *requires* tenant limits (``required``): then
creating, starting or exec-ing into a container of a tenant without a quota
file on this host fails with LimitsNotSet, and the quota is written to the
tenant cgroup on every create, start and exec, so nothing of a tenant runs
above a cgroup that lacks its limits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from engine.cgroups.controller import CgroupDriver
from engine.cgroups.resources import HostCapacity, Resources, check_within, validate_resources
from engine.cgroups.tree import remove_if_empty, tenant_cgroup
from engine.errors import Conflict, InvalidSpec, LimitsNotSet
from engine.fsutil import atomic_write_json, file_lock, read_json
from engine.paths import EnginePaths
from engine.runtime.idmap import validate_tenant


class TenantQuotas:
    """Reads, writes and enforces tenant quotas for one engine instance."""

    def __init__(
        self,
        paths: EnginePaths,
        instance: str,
        driver: Callable[[], CgroupDriver],
        cgroup_roots: Callable[[], Sequence[Path]],
        capacity: Callable[[], HostCapacity] = HostCapacity.detect,
    ) -> None:
        self.paths = paths
        self.instance = instance
        self._driver = driver
        self._cgroup_roots = cgroup_roots
        self._capacity = capacity
        self.directory = paths.tenants / "quotas"
        self.required = False

    def _file(self, tenant: str) -> Path:
        return self.directory / f"{validate_tenant(tenant)}.json"

    def cgroup(self, tenant: str) -> str:
        """The tenant's cgroup path (``/<instance>/tenants/<tenant>``)."""
        return tenant_cgroup(self.instance, validate_tenant(tenant))

    def get(self, tenant: str) -> Resources:
        """The tenant's quota (unlimited when none was set). Raises InvalidSpec for a bad name."""
        path = self._file(tenant)
        try:
            return Resources.from_dict(read_json(path))
        except FileNotFoundError:
            return Resources()
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidSpec(f"the quota file {path} is damaged ({exc}); set the quota again") from None

    def all(self) -> dict[str, Resources]:
        """Every tenant that has a quota file, with its quota."""
        if not self.directory.exists():
            return {}
        return {p.stem: self.get(p.stem) for p in sorted(self.directory.glob("*.json"))}

    def set(self, tenant: str, quota: Resources) -> Resources:
        """Store ``quota`` for ``tenant`` and apply it at once to its running containers.

        Raises InvalidSpec/QuotaExceeded for a quota the host cannot enforce
        (nothing is changed then), and QuotaExceeded when the kernel cannot
        lower memory below what the tenant uses now (the old quota stays).
        """
        validate_resources(quota, self._capacity(), what=f"tenant {tenant} quota")
        with self.lock(tenant):
            old = self.get(tenant)
            driver = self._driver()
            cgroup = self.cgroup(tenant)
            if driver.exists(cgroup):
                try:
                    driver.apply(cgroup, quota)
                except BaseException:
                    with contextlib.suppress(Exception):
                        driver.apply(cgroup, old)
                    raise
            if quota.is_unlimited:
                with contextlib.suppress(FileNotFoundError):
                    self._file(tenant).unlink()
            else:
                atomic_write_json(self._file(tenant), quota.to_dict())
        return quota

    def check_container(self, tenant: str, resources: Resources) -> Resources:
        """Return a container's ``resources`` if this host and the tenant's quota allow them.

        Raises InvalidSpec for values out of range and QuotaExceeded for limits
        above the host's capacity or the tenant's quota.
        """
        validate_resources(resources, self._capacity())
        check_within(resources, self.get(tenant), tenant)
        return resources

    def lock(self, tenant: str) -> contextlib.AbstractContextManager[None]:
        """The lock that orders creating and removing this tenant's cgroup."""
        return file_lock(self.paths.run / "locks" / f"tenant-{validate_tenant(tenant)}")

    def required_quota(self, tenant: str) -> Resources:
        """The tenant's quota; LimitsNotSet when limits are required and the tenant has none here."""
        quota = self.get(tenant)
        if self.required and quota.is_unlimited:
            raise LimitsNotSet(
                f"tenant {tenant} has no resource quota on this host, and this engine runs nothing of a "
                "tenant without one; the host agent writes it from the panel (or set it with "
                "`hpctl tenant quota set`)"
            )
        return quota

    @contextlib.contextmanager
    def ready(self, tenant: str) -> Iterator[str]:
        """Hold the tenant lock with its cgroup made and its quota written; yields the cgroup path.

        Create, start or exec inside the block. If nothing was created below
        the cgroup when the block ends with an error, the empty levels made
        here are removed again. Raises LimitsNotSet (see ``required``),
        RuntimeFailure/QuotaExceeded from the kernel.
        """
        with self.lock(tenant):
            quota = self.required_quota(tenant)
            cgroup = self.cgroup(tenant)
            driver = self._driver()
            try:
                driver.ensure(cgroup)
                # written every time, not only to a new cgroup: whatever changed the cgroup
                # meanwhile, the tenant's quota is what sits above its containers now (a new
                # cgroup starts unlimited, which is right for a tenant with no quota)
                if not quota.is_unlimited:
                    driver.apply(cgroup, quota)
                yield cgroup
            except BaseException:
                remove_if_empty(self._cgroup_roots(), cgroup)
                raise

    def forget(self, tenant: str) -> None:
        """Drop the tenant's quota file and its (empty) cgroup tree in every hierarchy.

        Raises Conflict while a process still runs below the tenant's cgroup.
        """
        with self.lock(tenant):
            cgroup = self.cgroup(tenant)
            for root in self._cgroup_roots():
                top = root / cgroup.strip("/")
                if not top.is_dir():
                    continue
                for directory in sorted((d for d in top.rglob("*") if d.is_dir()), reverse=True):
                    remove_if_empty([root], str(directory.relative_to(root)), stop_at=cgroup)
                remove_if_empty([root], cgroup)
                if top.is_dir():
                    raise Conflict(
                        f"tenant {tenant!r}: processes still run in {top}; stop them, then purge again"
                    )
            with contextlib.suppress(FileNotFoundError):
                self._file(tenant).unlink()

    def release(self, tenant: str, container_cgroup: str) -> None:
        """Remove a container's cgroup leftovers and the tenant's (and instance's) if now empty."""
        with self.lock(tenant):
            remove_if_empty(self._cgroup_roots(), container_cgroup)
