"""Live statistics and billing usage of containers and tenants.

Stats are one reading of the cgroup counters (``hpctl stats``); CPU % is the
difference of two readings. Usage is what the panel bills: cumulative
CPU-seconds and memory byte-seconds, accumulated by a sampler
(:meth:`UsageMeter.sample`, run every few seconds by ``hpctl system
monitor``), plus the current pids and disk use. Each container keeps its
usage in ``<container dir>/usage.json``; each tenant in
``<root>/tenants/usage/<tenant>.json``, which also keeps what removed
containers used.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.cgroups.controller import CgroupDriver, CgroupStats
from engine.cgroups.resources import Resources
from engine.fsutil import atomic_write_json, file_lock, read_json
from engine.paths import EnginePaths
from engine.runtime.model import Container


@dataclass(frozen=True)
class ContainerStats:
    """One reading of a container's cgroup counters at wall-clock time ``at``."""

    id: str
    name: str
    tenant: str
    at: float
    cgroup: CgroupStats
    cpus: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data.update(data.pop("cgroup"))
        return data


def cpu_percent(before: CgroupStats, after: CgroupStats, seconds: float) -> float:
    """CPU use between two readings ``seconds`` apart, in percent of one core (200% = two cores)."""
    if seconds <= 0 or after.cpu_usage_ns < before.cpu_usage_ns:
        return 0.0
    return (after.cpu_usage_ns - before.cpu_usage_ns) / (seconds * 1e9) * 100


def disk_usage(path: Path) -> int:
    """Bytes allocated to the files below ``path`` (hard links counted once; symlinks not followed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
    return total


@dataclass
class Usage:
    """Billing usage of a container or a tenant.

    ``cpu_seconds`` and ``memory_byte_seconds`` only grow; ``pids``,
    ``memory_bytes`` and ``disk_bytes`` are the last sampled values. The
    ``last_*`` fields are the sampler's bookkeeping.
    """

    cpu_seconds: float = 0.0
    memory_byte_seconds: float = 0.0
    memory_bytes: int = 0
    pids: int = 0
    disk_bytes: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    samples: int = 0
    first_sample: float = 0.0
    last_sample: float = 0.0
    last_cpu_ns: int = 0
    last_io_read: int = 0
    last_io_write: int = 0
    containers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        """Rebuild a record, ignoring unknown keys."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def memory_gib_hours(self) -> float:
        """memory_byte_seconds in GiB-hours, the unit prices are usually given in."""
        return self.memory_byte_seconds / (1024**3 * 3600)


@dataclass(frozen=True)
class TenantReport:
    """What `hpctl tenant usage` shows: the quota, the live totals and the billing usage."""

    tenant: str
    quota: Resources
    live: CgroupStats
    usage: Usage
    running: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "tenant": self.tenant,
            "quota": self.quota.to_dict(),
            "live": asdict(self.live),
            "usage": self.usage.to_dict(),
            "running": list(self.running),
        }


def _load(path: Path) -> Usage:
    try:
        return Usage.from_dict(read_json(path))
    except (FileNotFoundError, ValueError, TypeError):
        return Usage()


def _delta(current: int, last: int) -> int:
    """Growth of a cumulative counter; a counter that went back (cgroup recreated) restarted at 0."""
    return current - last if current >= last else current


class UsageMeter:
    """Reads stats and accumulates billing usage for the containers of one engine."""

    def __init__(
        self,
        paths: EnginePaths,
        driver: Callable[[], CgroupDriver],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths = paths
        self._driver = driver
        self._clock = clock

    def container_file(self, cid: str) -> Path:
        """Where a container's accumulated usage is kept (inside its directory, gone with it)."""
        return self.paths.containers / cid / "usage.json"

    def tenant_file(self, tenant: str) -> Path:
        """Where a tenant's accumulated usage is kept (it outlives the tenant's containers)."""
        return self.paths.tenants / "usage" / f"{tenant}.json"

    def stats(self, containers: Iterable[Container]) -> list[ContainerStats]:
        """One reading of each container's cgroup (containers without a cgroup are skipped)."""
        driver = self._driver()
        result = []
        for c in containers:
            reading = driver.stats(c.cgroup_path)
            if reading is not None:
                result.append(
                    ContainerStats(
                        id=c.id,
                        name=c.name,
                        tenant=c.tenant,
                        at=self._clock(),
                        cgroup=reading,
                        cpus=c.resources.cpus,
                    )
                )
        return result

    def tenant_stats(self, cgroup: str) -> CgroupStats:
        """The live totals of a tenant's cgroup (zeros when it has no containers)."""
        return self._driver().stats(cgroup) or CgroupStats()

    def container_usage(self, cid: str) -> Usage:
        """The accumulated usage of a container (zeros before its first sample)."""
        return _load(self.container_file(cid))

    def tenant_usage(self, tenant: str) -> Usage:
        """The accumulated usage of a tenant, including its removed containers."""
        return _load(self.tenant_file(tenant))

    def forget_tenant(self, tenant: str) -> None:
        """Delete a (purged) tenant's accumulated usage."""
        with file_lock(self.paths.tenants / "usage" / ".lock"):
            self.tenant_file(tenant).unlink(missing_ok=True)

    def sample(self, running: Iterable[Container], *, final: bool = False) -> int:
        """Add the usage since the previous sample of every running container; returns how many.

        Containers that are no longer running keep their last sampled values
        (their pids and memory drop to 0 in the tenant totals). With
        ``final``, only the cumulative counters of the given containers move
        on (what the engine does right before it removes a container, so a
        short-lived one is billed too); the tenant's live totals stay as the
        last full round left them.
        """
        now = self._clock()
        driver = self._driver()
        per_tenant: dict[str, list[tuple[Container, Usage, Usage]]] = {}
        # one lock for the whole round: the monitor and a removal must not both add the same delta
        with file_lock(self.paths.tenants / "usage" / ".lock"):
            for c in running:
                reading = driver.stats(c.cgroup_path) if c.cgroup_path else None
                path = self.container_file(c.id)
                if reading is None or not path.parent.exists():
                    continue
                before = _load(path)
                disk = before.disk_bytes if final else disk_usage(path.parent / "upper")
                after = self._advance(before, reading, now, disk)
                atomic_write_json(path, after.to_dict(), compact=True)
                per_tenant.setdefault(c.tenant, []).append((c, before, after))
            for tenant, items in per_tenant.items():
                total = _load(self.tenant_file(tenant))
                for _c, before, after in items:
                    total.cpu_seconds += after.cpu_seconds - before.cpu_seconds
                    total.memory_byte_seconds += after.memory_byte_seconds - before.memory_byte_seconds
                    total.io_read_bytes += after.io_read_bytes - before.io_read_bytes
                    total.io_write_bytes += after.io_write_bytes - before.io_write_bytes
                if not final:
                    total.pids = sum(after.pids for _c, _b, after in items)
                    total.memory_bytes = sum(after.memory_bytes for _c, _b, after in items)
                    total.disk_bytes = sum(after.disk_bytes for _c, _b, after in items)
                    total.containers = sorted(c.id for c, _b, _a in items)
                    total.samples += 1
                total.first_sample = total.first_sample or now
                total.last_sample = now
                atomic_write_json(self.tenant_file(tenant), total.to_dict(), compact=True)
            if not final:
                self._zero_idle_tenants(set(per_tenant), now)
        return sum(len(items) for items in per_tenant.values())

    def _zero_idle_tenants(self, active: set[str], now: float) -> None:
        directory = self.paths.tenants / "usage"
        for path in directory.glob("*.json"):
            if path.stem in active:
                continue
            total = _load(path)
            if total.pids or total.memory_bytes or total.containers:
                total.pids = total.memory_bytes = 0
                total.containers = []
                total.last_sample = now
                atomic_write_json(path, total.to_dict(), compact=True)

    @staticmethod
    def _advance(before: Usage, reading: CgroupStats, now: float, disk: int) -> Usage:
        after = Usage(**before.to_dict())
        cpu_delta = _delta(reading.cpu_usage_ns, before.last_cpu_ns)
        after.cpu_seconds += cpu_delta / 1e9
        if before.last_sample:
            elapsed = max(now - before.last_sample, 0.0)
            # the trapezoid between the two readings
            after.memory_byte_seconds += (before.memory_bytes + reading.memory_usage) / 2 * elapsed
        after.io_read_bytes += _delta(reading.io_read_bytes, before.last_io_read)
        after.io_write_bytes += _delta(reading.io_write_bytes, before.last_io_write)
        after.memory_bytes = reading.memory_usage
        after.pids = reading.pids
        after.disk_bytes = disk
        after.samples += 1
        after.first_sample = before.first_sample or now
        after.last_sample = now
        after.last_cpu_ns = reading.cpu_usage_ns
        after.last_io_read = reading.io_read_bytes
        after.last_io_write = reading.io_write_bytes
        return after
