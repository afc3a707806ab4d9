"""Limits and statistics of one cgroup, for cgroup v1 (legacy/hybrid) and v2 (unified).

The engine writes limits itself only to tenant cgroups (crun writes the
containers' from config.json, and `crun update` changes them); it reads
statistics of both. :func:`cgroup_driver` picks the driver for the host's
layout. The seam is the file-system root below which the hierarchies are
reached (``fs_root``) and the layout: unit tests pass a fake tree in a
temporary directory and check exactly which files get which values.

Translation from :class:`~engine.cgroups.resources.Resources`:

==================  ==================================  ==========================================
limit               v1 file (controller)                v2 file
==================  ==================================  ==========================================
memory              memory.limit_in_bytes (+ memsw)     memory.max (+ memory.swap.max 0)
reservation         memory.soft_limit_in_bytes          memory.low
cpus                cpu.cfs_quota_us / cpu.cfs_period_us  cpu.max "quota period"
cpu shares          cpu.shares                          cpu.weight = 1 + (shares-2)*9999/262142
pids                pids.max                            pids.max
device throttles    blkio.throttle.{read,write}_{bps,iops}_device  io.max "M:m rbps= wbps= riops= wiops="
==================  ==================================  ==========================================
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.cgroups.layout import CgroupLayout, detect_cgroup_layout, host_path
from engine.cgroups.resources import THROTTLE_KINDS, DeviceThrottle, Resources
from engine.errors import InvalidSpec, QuotaExceeded, RuntimeFailure

UNLIMITED_V1 = 1 << 62
"""v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages); anything above this is unlimited."""

DEFAULT_SHARES = 1024
DEFAULT_WEIGHT = 100
V2_CONTROLLERS = ("cpu", "memory", "pids", "io")
"""The v2 controllers the engine enables down to each tenant."""

Write = tuple[str, str, str]
"""(controller, file name, value): one write into a cgroup; the controller picks the v1 hierarchy."""


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` (2..262144) as v2 ``cpu.weight`` (1..10000), the mapping crun and runc use."""
    shares = min(max(shares, 2), 262_144)
    return 1 + ((shares - 2) * 9999) // 262_142


@dataclass(frozen=True)
class CgroupStats:
    """Counters of one cgroup (and everything below it) at one moment.

    ``cpu_usage_ns`` is cumulative CPU time; ``memory_usage`` is the working
    set (usage minus inactive page cache, as `docker stats` shows it);
    limits are None when unlimited.
    """

    cpu_usage_ns: int = 0
    memory_usage: int = 0
    memory_limit: int | None = None
    pids: int = 0
    pids_limit: int | None = None
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    oom_kills: int = 0


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(text: str | None) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, memory.oom_control) as a dict."""
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            result[parts[0]] = int(parts[1])
    return result


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        if exc.errno == errno.EBUSY and path.name.startswith("memory."):
            raise QuotaExceeded(
                f"cannot set {path.name} to {value}: the cgroup {path.parent} uses more memory than that "
                "and the kernel could not reclaim it; stop something or choose a higher limit"
            ) from None
        if exc.errno == errno.EINVAL:
            raise InvalidSpec(f"the kernel refused {value!r} for {path}: {exc.strerror}") from None
        raise RuntimeFailure(f"cannot write {value!r} to {path}: {exc.strerror}") from None


class CgroupDriver(ABC):
    """Reads and writes the cgroup files of one host layout, below ``fs_root``."""

    version: int = 0

    def __init__(self, layout: CgroupLayout, fs_root: Path = Path("/")) -> None:
        self.layout = layout
        self.fs_root = Path(fs_root)

    def _path(self, mount: PurePosixPath, cgroup: str) -> Path:
        return host_path(self.fs_root, mount / cgroup.strip("/"))

    def dirs(self, cgroup: str) -> list[Path]:
        """The directories of ``cgroup`` in every hierarchy (whether they exist or not)."""
        self.layout.cgroup_dirs(cgroup)  # validates the path
        return [self._path(mp, cgroup) for mp in self.layout.hierarchy_dirs()]

    def exists(self, cgroup: str) -> bool:
        """Whether ``cgroup`` exists (in the hierarchy that holds its limits)."""
        return self._limit_dir("memory", cgroup).is_dir()

    @abstractmethod
    def _limit_dir(self, controller: str, cgroup: str) -> Path: ...

    @abstractmethod
    def writes(self, resources: Resources, current_devices: Iterable[str] = ()) -> list[Write]:
        """The writes that make a cgroup enforce exactly ``resources`` (pure).

        ``current_devices`` are the ``major:minor`` keys throttled now; those
        no longer in ``resources`` get their throttles removed.
        """

    @abstractmethod
    def throttled_devices(self, cgroup: str) -> set[str]:
        """``major:minor`` of the devices with an I/O throttle on ``cgroup`` now."""

    def ensure(self, cgroup: str) -> list[Path]:
        """Create ``cgroup`` (and its parents) in every hierarchy; returns the directories made.

        Raises RuntimeFailure when the kernel refuses.
        """
        made: list[Path] = []
        for directory in self.dirs(cgroup):
            missing = []
            probe = directory
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for d in reversed(missing):
                try:
                    os.mkdir(d)
                    made.append(d)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise RuntimeFailure(f"cannot create cgroup {d}: {exc.strerror}") from None
        return made

    def apply(self, cgroup: str, resources: Resources) -> None:
        """Write ``resources`` to the existing ``cgroup``, replacing every limit it had.

        Raises QuotaExceeded when memory cannot be lowered below current use,
        InvalidSpec when the kernel refuses a value, RuntimeFailure otherwise.
        """
        for controller, name, value in self._ordered(
            cgroup, self.writes(resources, self.throttled_devices(cgroup))
        ):
            path = self._limit_dir(controller, cgroup) / name
            if not path.exists() and name in self.optional_files:
                continue
            self.write_file(path, value)

    def write_file(self, path: Path, value: str) -> None:
        """Write one cgroup file (the single place the engine writes cgroup files).

        Raises QuotaExceeded (memory in use above a new limit), InvalidSpec
        (a value the kernel refuses) or RuntimeFailure.
        """
        _write(path, value)

    optional_files: frozenset[str] = frozenset()
    """Files some kernels lack (swap accounting): skipped when missing."""

    def _ordered(self, cgroup: str, writes: list[Write]) -> list[Write]:
        return writes

    @abstractmethod
    def stats(self, cgroup: str) -> CgroupStats | None:
        """The counters of ``cgroup``, or None when it does not exist."""

    @abstractmethod
    def oom_kills(self, cgroup: str) -> int | None:
        """How many processes of ``cgroup`` the OOM killer has killed (None when it does not exist)."""


class V1Driver(CgroupDriver):
    """cgroup v1 (legacy, or hybrid with no controller on the v2 hierarchy): one hierarchy per controller."""

    version = 1
    optional_files = frozenset({"memory.memsw.limit_in_bytes"})
    _THROTTLE_FILES = {
        "read_bps": "blkio.throttle.read_bps_device",
        "write_bps": "blkio.throttle.write_bps_device",
        "read_iops": "blkio.throttle.read_iops_device",
        "write_iops": "blkio.throttle.write_iops_device",
    }

    def _limit_dir(self, controller: str, cgroup: str) -> Path:
        mount = self.layout.v1_mounts.get(controller)
        if mount is None:
            raise RuntimeFailure(f"the {controller} cgroup controller is not mounted; run `hpctl host setup`")
        return self._path(mount, cgroup)

    def writes(self, resources: Resources, current_devices: Iterable[str] = ()) -> list[Write]:
        r = resources
        memory = str(r.memory) if r.memory is not None else "-1"
        out: list[Write] = [
            ("memory", "memory.limit_in_bytes", memory),
            ("memory", "memory.memsw.limit_in_bytes", memory),
            ("memory", "memory.soft_limit_in_bytes", str(r.memory_reservation or -1)),
            ("cpu", "cpu.cfs_period_us", str(r.cpu_period)),
            ("cpu", "cpu.cfs_quota_us", str(r.cpu_quota) if r.cpu_quota is not None else "-1"),
            ("cpu", "cpu.shares", str(r.cpu_shares or DEFAULT_SHARES)),
            ("pids", "pids.max", str(r.pids) if r.pids is not None else "max"),
        ]
        wanted: dict[tuple[str, str], DeviceThrottle] = {(d.kind, d.key): d for d in r.devices}
        keys = {d.key for d in r.devices} | set(current_devices)
        for kind in THROTTLE_KINDS:
            for key in sorted(keys):
                throttle = wanted.get((kind, key))
                out.append(("blkio", self._THROTTLE_FILES[kind], f"{key} {throttle.rate if throttle else 0}"))
        return out

    def _ordered(self, cgroup: str, writes: list[Write]) -> list[Write]:
        """memsw must stay >= the memory limit at every step: raise it first, lower it last."""
        new = next(int(v) for _c, n, v in writes if n == "memory.limit_in_bytes")
        current = _read_int(self._limit_dir("memory", cgroup) / "memory.limit_in_bytes")
        raising = new == -1 or (current is not None and new > current)
        memsw = [w for w in writes if w[1] == "memory.memsw.limit_in_bytes"]
        rest = [w for w in writes if w[1] != "memory.memsw.limit_in_bytes"]
        return memsw + rest if raising else rest[:1] + memsw + rest[1:]

    def throttled_devices(self, cgroup: str) -> set[str]:
        keys: set[str] = set()
        with contextlib.suppress(RuntimeFailure):
            for name in self._THROTTLE_FILES.values():
                for line in (_read(self._limit_dir("blkio", cgroup) / name) or "").splitlines():
                    parts = line.split()
                    if len(parts) == 2 and ":" in parts[0]:
                        keys.add(parts[0])
        return keys

    def stats(self, cgroup: str) -> CgroupStats | None:
        mem = self._limit_dir("memory", cgroup)
        if not mem.is_dir():
            return None
        acct_mount = self.layout.v1_mounts.get("cpuacct")
        cpu = _read_int(self._path(acct_mount, cgroup) / "cpuacct.usage") if acct_mount else None
        usage = _read_int(mem / "memory.usage_in_bytes") or 0
        inactive = _keyed(_read(mem / "memory.stat")).get("total_inactive_file", 0)
        limit = _read_int(mem / "memory.limit_in_bytes")
        pids_dir = self._limit_dir("pids", cgroup)
        read = write = 0
        blkio_mount = self.layout.v1_mounts.get("blkio")
        if blkio_mount is not None:
            text = _read(self._path(blkio_mount, cgroup) / "blkio.throttle.io_service_bytes_recursive")
            for line in (text or "").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    read += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    write += int(parts[2])
        return CgroupStats(
            cpu_usage_ns=cpu or 0,
            memory_usage=usage - inactive if usage > inactive else usage,
            memory_limit=None if limit is None or limit >= UNLIMITED_V1 else limit,
            pids=_read_int(pids_dir / "pids.current") or 0,
            pids_limit=_read_int(pids_dir / "pids.max"),
            io_read_bytes=read,
            io_write_bytes=write,
            oom_kills=self.oom_kills(cgroup) or 0,
        )

    def oom_kills(self, cgroup: str) -> int | None:
        text = _read(self._limit_dir("memory", cgroup) / "memory.oom_control")
        return None if text is None else _keyed(text).get("oom_kill", 0)


class V2Driver(CgroupDriver):
    """cgroup v2 (unified): one hierarchy; controllers enabled level by level in cgroup.subtree_control."""

    version = 2
    optional_files = frozenset({"memory.swap.max"})
    _IO_KEYS = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}

    def _mount(self) -> PurePosixPath:
        if self.layout.v2_mount is None:
            raise RuntimeFailure("no cgroup2 hierarchy is mounted; run `hpctl host setup`")
        return self.layout.v2_mount

    def _limit_dir(self, controller: str, cgroup: str) -> Path:
        return self._path(self._mount(), cgroup)

    def writes(self, resources: Resources, current_devices: Iterable[str] = ()) -> list[Write]:
        r = resources
        out: list[Write] = [
            ("memory", "memory.max", str(r.memory) if r.memory is not None else "max"),
            ("memory", "memory.swap.max", "0" if r.memory is not None else "max"),
            ("memory", "memory.low", str(r.memory_reservation or 0)),
            ("cpu", "cpu.max", f"{r.cpu_quota if r.cpu_quota is not None else 'max'} {r.cpu_period}"),
            (
                "cpu",
                "cpu.weight",
                str(shares_to_weight(r.cpu_shares) if r.cpu_shares is not None else DEFAULT_WEIGHT),
            ),
            ("pids", "pids.max", str(r.pids) if r.pids is not None else "max"),
        ]
        per_device: dict[str, dict[str, str]] = {}
        for key in set(current_devices) | {d.key for d in r.devices}:
            per_device[key] = {name: "max" for name in self._IO_KEYS.values()}
        for d in r.devices:
            per_device[d.key][self._IO_KEYS[d.kind]] = str(d.rate)
        for key in sorted(per_device):
            limits = " ".join(f"{k}={v}" for k, v in per_device[key].items())
            out.append(("io", "io.max", f"{key} {limits}"))
        return out

    def throttled_devices(self, cgroup: str) -> set[str]:
        text = _read(self._path(self._mount(), cgroup) / "io.max") or ""
        return {line.split()[0] for line in text.splitlines() if line.strip()}

    def ensure(self, cgroup: str) -> list[Path]:
        """Create ``cgroup`` and enable the limit controllers in every level above it and in it."""
        made = super().ensure(cgroup)
        mount = self._mount()
        parts = PurePosixPath(cgroup).relative_to("/").parts
        for depth in range(len(parts) + 1):
            level = host_path(self.fs_root, mount.joinpath(*parts[:depth]))
            available = set((_read(level / "cgroup.controllers") or "").split())
            enabled = set((_read(level / "cgroup.subtree_control") or "").split())
            for controller in V2_CONTROLLERS:
                if controller in available and controller not in enabled:
                    self.write_file(level / "cgroup.subtree_control", f"+{controller}")
        return made

    def stats(self, cgroup: str) -> CgroupStats | None:
        d = self._path(self._mount(), cgroup)
        if not d.is_dir():
            return None
        cpu = _keyed(_read(d / "cpu.stat")).get("usage_usec", 0)
        current = _read_int(d / "memory.current") or 0
        inactive = _keyed(_read(d / "memory.stat")).get("inactive_file", 0)
        read = write = 0
        for line in (_read(d / "io.stat") or "").splitlines():
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "rbytes":
                    read += int(value)
                elif key == "wbytes":
                    write += int(value)
        return CgroupStats(
            cpu_usage_ns=cpu * 1000,
            memory_usage=current - inactive if current > inactive else current,
            memory_limit=_read_int(d / "memory.max"),
            pids=_read_int(d / "pids.current") or 0,
            pids_limit=_read_int(d / "pids.max"),
            io_read_bytes=read,
            io_write_bytes=write,
            oom_kills=self.oom_kills(cgroup) or 0,
        )

    def oom_kills(self, cgroup: str) -> int | None:
        text = _read(self._path(self._mount(), cgroup) / "memory.events")
        return None if text is None else _keyed(text).get("oom_kill", 0)


def cgroup_driver(layout: CgroupLayout, fs_root: Path = Path("/")) -> CgroupDriver:
    """The driver for ``layout``: V2Driver on unified hosts, V1Driver on legacy and hybrid ones."""
    return V2Driver(layout, fs_root) if layout.version == 2 else V1Driver(layout, fs_root)


@functools.cache
def host_driver() -> CgroupDriver:
    """The driver for this host's cgroup layout (detected once: mounts do not change while we run).

    Raises HostNotReady when no cgroup file system is mounted.
    """
    return cgroup_driver(detect_cgroup_layout())
