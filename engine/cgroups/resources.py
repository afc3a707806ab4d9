"""Resource limits of a container or a tenant, their parsing and validation (pure, no cgroup I/O).

A :class:`Resources` value says what a cgroup may use: memory (a hard limit
and a soft reservation), CPU (a quota per period and a relative weight in
v1 ``cpu.shares`` units), a maximum number of processes and block I/O
throttles per device. ``None`` means "no limit". The same value limits a
container (through crun, in its ``config.json``) and a tenant (written by
the engine to the tenant's cgroup, see :mod:`engine.cgroups.controller`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from engine.errors import InvalidSpec, QuotaExceeded

CPU_PERIOD_US = 100_000
"""The CFS period we use for ``--cpus`` (100 ms, the kernel's default)."""

MIN_MEMORY = 6 * 1024 * 1024
"""The smallest memory limit we accept: below it crun and the kernel cannot start a container."""

MAX_BYTES = 1 << 60
"""Anything above an exbibyte is a typo, not a limit."""

MAX_PIDS = 4_194_304
"""The kernel's PID_MAX_LIMIT: a pids limit above it means nothing."""

MIN_SHARES, MAX_SHARES = 2, 262_144
"""The range of v1 ``cpu.shares`` (and of ``--cpu-shares``)."""

MAX_RATE = 1 << 50
"""An absurd bytes-per-second or IOPS rate (a petabyte a second)."""

ThrottleKind = Literal["read_bps", "write_bps", "read_iops", "write_iops"]
THROTTLE_KINDS: tuple[ThrottleKind, ...] = ("read_bps", "write_bps", "read_iops", "write_iops")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$")


@dataclass(frozen=True)
class DeviceThrottle:
    """A block I/O throttle on one device: ``rate`` bytes/s (``*_bps``) or operations/s (``*_iops``)."""

    kind: ThrottleKind
    major: int
    minor: int
    rate: int
    device: str = ""

    @property
    def key(self) -> str:
        """``major:minor`` as the cgroup files spell a device."""
        return f"{self.major}:{self.minor}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "major": self.major,
            "minor": self.minor,
            "rate": self.rate,
            "device": self.device,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceThrottle:
        """The throttle a :meth:`to_dict` dict describes; raises InvalidSpec when malformed."""
        kind = data.get("kind")
        if kind not in THROTTLE_KINDS:
            raise InvalidSpec(f"unknown block I/O throttle kind {kind!r}")
        return cls(
            kind=kind,
            major=int(data["major"]),
            minor=int(data["minor"]),
            rate=int(data["rate"]),
            device=str(data.get("device", "")),
        )


@dataclass(frozen=True)
class Resources:
    """Resource limits; ``None`` (and an empty ``devices``) means unlimited.

    ``memory`` and ``memory_reservation`` are bytes; ``cpu_quota`` is
    microseconds of CPU time per ``cpu_period`` microseconds (0.5 CPU =
    50000/100000); ``cpu_shares`` is a relative weight in v1 units (1024 is
    the default; v2 hosts get it translated to ``cpu.weight``); ``pids`` is
    the maximum number of processes and threads.
    """

    memory: int | None = None
    memory_reservation: int | None = None
    cpu_quota: int | None = None
    cpu_period: int = CPU_PERIOD_US
    cpu_shares: int | None = None
    pids: int | None = None
    devices: tuple[DeviceThrottle, ...] = field(default_factory=tuple)

    @property
    def cpus(self) -> float | None:
        """The CPU limit in cores (quota / period), or None."""
        return None if self.cpu_quota is None else self.cpu_quota / self.cpu_period

    @property
    def is_unlimited(self) -> bool:
        """True when no limit at all is set."""
        return self == Resources()

    def merged(self, other: Resources) -> Resources:
        """These limits with every limit that ``other`` sets replacing ours (for `update`)."""
        devices = {(d.kind, d.key): d for d in self.devices}
        devices.update({(d.kind, d.key): d for d in other.devices})
        return Resources(
            memory=other.memory if other.memory is not None else self.memory,
            memory_reservation=(
                other.memory_reservation if other.memory_reservation is not None else self.memory_reservation
            ),
            cpu_quota=other.cpu_quota if other.cpu_quota is not None else self.cpu_quota,
            cpu_period=other.cpu_period if other.cpu_quota is not None else self.cpu_period,
            cpu_shares=other.cpu_shares if other.cpu_shares is not None else self.cpu_shares,
            pids=other.pids if other.pids is not None else self.pids,
            devices=tuple(devices.values()),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what container records and tenant quota files store)."""
        return {
            "memory": self.memory,
            "memory_reservation": self.memory_reservation,
            "cpu_quota": self.cpu_quota,
            "cpu_period": self.cpu_period,
            "cpu_shares": self.cpu_shares,
            "pids": self.pids,
            "devices": [d.to_dict() for d in self.devices],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Resources:
        """Rebuild from :meth:`to_dict` output (None or {} is unlimited); unknown keys are ignored."""
        if not data:
            return cls()
        return cls(
            memory=_opt_int(data.get("memory")),
            memory_reservation=_opt_int(data.get("memory_reservation")),
            cpu_quota=_opt_int(data.get("cpu_quota")),
            cpu_period=int(data.get("cpu_period") or CPU_PERIOD_US),
            cpu_shares=_opt_int(data.get("cpu_shares")),
            pids=_opt_int(data.get("pids")),
            devices=tuple(DeviceThrottle.from_dict(d) for d in data.get("devices") or ()),
        )

    def describe(self) -> dict[str, str]:
        """Human-readable limits, e.g. {'memory': '256MiB', 'cpus': '0.5'} ('unlimited' for None)."""
        return {
            "memory": format_bytes(self.memory),
            "memory_reservation": format_bytes(self.memory_reservation),
            "cpus": "unlimited" if self.cpus is None else f"{self.cpus:g}",
            "cpu_shares": "default" if self.cpu_shares is None else str(self.cpu_shares),
            "pids": "unlimited" if self.pids is None else str(self.pids),
            "devices": ", ".join(
                f"{d.device or d.key} {d.kind}="
                + (format_bytes(d.rate) + "/s" if d.kind.endswith("bps") else f"{d.rate}/s")
                for d in self.devices
            )
            or "none",
        }


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


# ---- parsing --------------------------------------------------------------------------------


def parse_bytes(value: str, what: str = "size") -> int:
    """'256m', '1.5g', '512KiB', '4096' as bytes (powers of 1024).

    Raises InvalidSpec for negative numbers, unknown units and absurd sizes.
    """
    text = value.strip().lower()
    match = _SIZE_RE.match(text)
    if text.startswith("-"):
        raise InvalidSpec(f"invalid {what} {value!r}: must not be negative")
    if not match:
        raise InvalidSpec(f"invalid {what} {value!r}: use a number with an optional unit b, k, m, g or t")
    number, unit = match.groups()
    if unit not in _UNITS:
        raise InvalidSpec(f"invalid {what} {value!r}: unknown unit {unit!r}; use b, k, m, g or t")
    result = int(float(number) * _UNITS[unit])
    if result > MAX_BYTES:
        raise InvalidSpec(f"invalid {what} {value!r}: larger than an exbibyte")
    return result


def format_bytes(n: int | None) -> str:
    """Bytes in binary units: '256MiB', '1.5GiB' ('unlimited' for None)."""
    if n is None:
        return "unlimited"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)}B" if unit == "B" else f"{value:.4g}{unit}"
        value /= 1024
    return f"{n}B"


def parse_cpus(value: str) -> int:
    """'0.5', '2' (cores) as a CFS quota in microseconds per :data:`CPU_PERIOD_US`.

    Raises InvalidSpec when not a positive number or too small to schedule (< 0.01).
    """
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidSpec(f"invalid CPU count {value!r}: use a number of cores such as 0.5 or 2") from None
    if not cpus > 0 or cpus != cpus or cpus == float("inf"):
        raise InvalidSpec(f"invalid CPU count {value!r}: must be more than 0")
    quota = round(cpus * CPU_PERIOD_US)
    if quota < 1000:
        raise InvalidSpec(f"invalid CPU count {value!r}: the smallest limit is 0.01 CPU")
    return quota


def parse_count(value: str, what: str) -> int:
    """A positive whole number; raises InvalidSpec otherwise."""
    text = value.strip()
    if not text.isdigit() or int(text) <= 0:
        raise InvalidSpec(f"invalid {what} {value!r}: use a whole number above 0")
    return int(text)


def device_numbers(path: str, stat_fn: Callable[[str], os.stat_result] = os.stat) -> tuple[int, int]:
    """(major, minor) of the block device at ``path``.

    Raises InvalidSpec when ``path`` does not exist or is not a block device
    (throttles apply to whole block devices such as /dev/vda, not to files,
    directories or character devices).
    """
    try:
        st = stat_fn(path)
    except OSError as exc:
        raise InvalidSpec(f"invalid device {path!r} for I/O throttling: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidSpec(
            f"invalid device {path!r} for I/O throttling: not a block device (give one like /dev/vda; "
            "see `lsblk`)"
        )
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def parse_device_throttle(
    kind: ThrottleKind, value: str, stat_fn: Callable[[str], os.stat_result] = os.stat
) -> DeviceThrottle:
    """'/dev/vda:1mb' (bps kinds) or '/dev/vda:100' (iops kinds) as a throttle.

    Raises InvalidSpec for a missing rate, a bad rate or a path that is not a block device.
    """
    device, sep, rate_text = value.rpartition(":")
    if not sep or not device or not rate_text:
        example = "/dev/vda:1mb" if kind.endswith("bps") else "/dev/vda:100"
        raise InvalidSpec(
            f"invalid --device-{kind.replace('_', '-')} {value!r}: use DEVICE:RATE, e.g. {example}"
        )
    rate = parse_bytes(rate_text, "I/O rate") if kind.endswith("bps") else parse_count(rate_text, "IOPS rate")
    if rate <= 0 or rate > MAX_RATE:
        raise InvalidSpec(f"invalid I/O rate {rate_text!r} for {device}: must be above 0 and sane")
    major, minor = device_numbers(device, stat_fn)
    return DeviceThrottle(kind=kind, major=major, minor=minor, rate=rate, device=str(Path(device)))


# ---- validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostCapacity:
    """What this host has: CPU cores and bytes of RAM."""

    cpus: int
    memory: int

    @classmethod
    def detect(cls, meminfo: Path = Path("/proc/meminfo")) -> HostCapacity:
        """This host's CPU count (os.cpu_count) and MemTotal from /proc/meminfo."""
        memory = 0
        try:
            for line in meminfo.read_text().splitlines():
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
        return cls(cpus=os.cpu_count() or 1, memory=memory or MAX_BYTES)


def validate_resources(resources: Resources, host: HostCapacity, *, what: str = "container") -> Resources:
    """Return ``resources`` if the kernel can enforce them on this host.

    Raises InvalidSpec for values out of range (memory below
    :data:`MIN_MEMORY`, a reservation above the limit, shares out of
    2..262144, ...) and QuotaExceeded for a limit above the host's capacity.
    """
    r = resources
    for name, value in (("memory limit", r.memory), ("memory reservation", r.memory_reservation)):
        if value is None:
            continue
        if value < MIN_MEMORY:
            raise InvalidSpec(
                f"{what} {name} {format_bytes(value)} is too small: the minimum is {format_bytes(MIN_MEMORY)}"
            )
        if value > host.memory:
            raise QuotaExceeded(
                f"{what} {name} {format_bytes(value)} is more than this host has "
                f"({format_bytes(host.memory)})"
            )
    if r.memory is not None and r.memory_reservation is not None and r.memory_reservation > r.memory:
        raise InvalidSpec(
            f"{what} memory reservation {format_bytes(r.memory_reservation)} is above its memory limit "
            f"{format_bytes(r.memory)}"
        )
    if not 1000 <= r.cpu_period <= 1_000_000:
        raise InvalidSpec(f"{what} CPU period {r.cpu_period}us is out of range (1000..1000000)")
    if r.cpu_quota is not None:
        if r.cpu_quota < 1000:
            raise InvalidSpec(f"{what} CPU quota {r.cpu_quota}us is too small: the minimum is 1000us")
        if r.cpu_quota > host.cpus * r.cpu_period:
            raise QuotaExceeded(f"{what} CPU limit {r.cpus:g} is more than this host's {host.cpus} CPUs")
    if r.cpu_shares is not None and not MIN_SHARES <= r.cpu_shares <= MAX_SHARES:
        raise InvalidSpec(f"{what} CPU shares {r.cpu_shares} out of range: use {MIN_SHARES}..{MAX_SHARES}")
    if r.pids is not None and not 1 <= r.pids <= MAX_PIDS:
        raise InvalidSpec(f"{what} pids limit {r.pids} out of range: use 1..{MAX_PIDS}")
    seen: set[tuple[str, str]] = set()
    for d in r.devices:
        if (d.kind, d.key) in seen:
            raise InvalidSpec(f"{what} has two {d.kind} throttles for device {d.device or d.key}")
        seen.add((d.kind, d.key))
        if not 0 < d.rate <= MAX_RATE:
            raise InvalidSpec(f"{what} {d.kind} rate {d.rate} for {d.device or d.key} is out of range")
    return resources


def capped(limits: Resources, cap: Resources) -> Resources:
    """``limits`` with memory, CPU and pids lowered to ``cap`` where it is lower (or ``limits`` unset)."""

    def low(value: int | None, bound: int | None) -> int | None:
        return bound if value is None else value if bound is None else min(value, bound)

    cpu_quota = limits.cpu_quota
    if cap.cpu_quota is not None:
        cap_quota = cap.cpu_quota * limits.cpu_period // cap.cpu_period
        cpu_quota = low(cpu_quota, cap_quota)
    return replace(
        limits, memory=low(limits.memory, cap.memory), cpu_quota=cpu_quota, pids=low(limits.pids, cap.pids)
    )


def check_within(child: Resources, cap: Resources, tenant: str) -> None:
    """Raise QuotaExceeded when a container asks for more than its tenant's quota allows."""
    if cap.memory is not None and child.memory is not None and child.memory > cap.memory:
        raise QuotaExceeded(
            f"memory limit {format_bytes(child.memory)} is above tenant {tenant}'s quota "
            f"{format_bytes(cap.memory)}; ask for less or raise the quota with `hpctl tenant quota set`"
        )
    if cap.cpus is not None and child.cpus is not None and child.cpus > cap.cpus + 1e-9:
        raise QuotaExceeded(
            f"CPU limit {child.cpus:g} is above tenant {tenant}'s quota of {cap.cpus:g} CPUs; "
            "ask for less or raise the quota with `hpctl tenant quota set`"
        )
    if cap.pids is not None and child.pids is not None and child.pids > cap.pids:
        raise QuotaExceeded(
            f"pids limit {child.pids} is above tenant {tenant}'s quota of {cap.pids}; "
            "ask for less or raise the quota with `hpctl tenant quota set`"
        )


# ---- the OCI form ---------------------------------------------------------------------------


def oci_resources(r: Resources) -> dict[str, Any]:
    """The OCI ``linux.resources`` members (without devices) that make crun enforce ``r``."""
    out: dict[str, Any] = {}
    memory: dict[str, int] = {}
    if r.memory is not None:
        memory["limit"] = r.memory
        # no swap beyond the limit: a limit that can spill into swap is no limit
        memory["swap"] = r.memory
    if r.memory_reservation is not None:
        memory["reservation"] = r.memory_reservation
    if memory:
        out["memory"] = memory
    cpu: dict[str, int] = {}
    if r.cpu_quota is not None:
        cpu["quota"] = r.cpu_quota
        cpu["period"] = r.cpu_period
    if r.cpu_shares is not None:
        cpu["shares"] = r.cpu_shares
    if cpu:
        out["cpu"] = cpu
    if r.pids is not None:
        out["pids"] = {"limit": r.pids}
    throttles: dict[str, list[dict[str, int]]] = {}
    names = {
        "read_bps": "throttleReadBpsDevice",
        "write_bps": "throttleWriteBpsDevice",
        "read_iops": "throttleReadIOPSDevice",
        "write_iops": "throttleWriteIOPSDevice",
    }
    for d in r.devices:
        throttles.setdefault(names[d.kind], []).append({"major": d.major, "minor": d.minor, "rate": d.rate})
    if throttles:
        out["blockIO"] = throttles
    return out
