"""Build an OCI runtime `config.json` for a container (pure: no I/O).

The defaults are what a host shared between strangers needs: every
namespace including a user namespace, Docker's default capabilities minus
NET_RAW, no_new_privileges, masked and read-only /proc and /sys paths, the
default seccomp profile and rlimits the host can grant.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runtime.idmap import IdRange
from engine.runtime.seccomp import default_profile

OCI_VERSION = "1.0.2"

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Character devices a container may use; everything else is denied.
ALLOWED_DEVICES: tuple[tuple[int, int | None], ...] = (
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),  # null zero full random urandom
    (5, 0),
    (5, 1),
    (5, 2),  # tty console ptmx
    (136, None),  # pts
)

MAX_NOFILE = 1048576


@dataclass(frozen=True)
class ProcessSpec:
    """The resolved process: everything the image and the caller decided."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    terminal: bool = False


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted into the container."""

    source: str
    destination: str
    read_only: bool = True
    no_exec: bool = False


@dataclass(frozen=True)
class TmpfsMount:
    """A size-capped tmpfs in the container (``mode`` None: 1777, like /tmp)."""

    destination: str
    size: int
    mode: int | None = None
    read_only: bool = False


# BundleSpec.netns_path value that keeps the host's network namespace (operator-only `--network host`).
HOST_NETNS = "host"

# A joined network namespace belongs to the host's user namespace, so the kernel refuses a fresh
# sysfs and crun bind-mounts the host's /sys (read-only) instead: hide the host's network devices
# (other tenants' bridge and veth names) there.
JOINED_NETNS_MASKED: tuple[str, ...] = ("/sys/class/net", "/sys/devices/virtual/net")


def joined_netns_masked(sys_root: Path = Path("/sys")) -> list[str]:
    """The /sys paths to mask in a container that joins a pre-made network namespace.

    JOINED_NETNS_MASKED plus the ``net`` directory of every host NIC that sits
    on a bus (``/sys/devices/pci0000:00/.../virtio2/net`` holds ``eth0``),
    found through ``<sys_root>/class/net``; so no host interface name shows.
    """
    masked = dict.fromkeys(JOINED_NETNS_MASKED)
    devices = os.path.normpath(sys_root / "devices")
    class_net = os.path.normpath(sys_root / "class" / "net")
    # sysfs class links point straight at the device (``../../devices/.../net/eth0``): reading
    # each link is enough, and far cheaper than resolving it on a host with hundreds of veths
    with contextlib.suppress(OSError):
        for link in sorted(os.listdir(class_net)):
            with contextlib.suppress(OSError):
                target = os.path.normpath(os.path.join(class_net, os.readlink(f"{class_net}/{link}")))
                parent = os.path.dirname(target)
                if os.path.basename(parent) == "net" and parent.startswith(f"{devices}/"):
                    masked[f"/sys/devices/{parent[len(devices) + 1 :]}"] = None
    return list(masked)


@dataclass(frozen=True)
class BundleSpec:
    """Everything needed to write one container's config.json."""

    process: ProcessSpec
    hostname: str
    id_range: IdRange
    cgroups_path: str
    rootfs: str = "rootfs"
    binds: tuple[BindMount, ...] = ()
    user_mounts: tuple[BindMount | TmpfsMount, ...] = ()
    """The caller's volumes, host binds and tmpfs mounts, mounted after ``binds`` in this order."""
    netns_path: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] | None = None
    """Extra OCI ``linux.resources`` members (memory, cpu, pids, blockIO); devices are always ours."""


def host_rlimits() -> list[dict[str, Any]]:
    """RLIMIT_NOFILE as high as this host lets us grant (its hard limit, capped)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = MAX_NOFILE if hard == resource.RLIM_INFINITY else min(hard, MAX_NOFILE)
    return [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}]


def process_json(p: ProcessSpec) -> dict[str, Any]:
    """The OCI `process` object, also used as the process spec of `crun exec`."""
    caps = list(DEFAULT_CAPABILITIES)
    privileged_user = p.uid == 0
    process: dict[str, Any] = {
        "terminal": p.terminal,
        "user": {"uid": p.uid, "gid": p.gid},
        "args": list(p.args),
        "env": list(p.env),
        "cwd": p.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps if privileged_user else [],
            "permitted": caps if privileged_user else [],
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": host_rlimits(),
        "noNewPrivileges": True,
    }
    if p.additional_gids:
        process["user"]["additionalGids"] = list(p.additional_gids)
    return process


def _mounts(spec: BundleSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    if spec.netns_path:
        # sysfs cannot be mounted for a network namespace of another user namespace; bind the
        # host's /sys read-only instead, without its submounts (crun's own fallback is recursive).
        sysfs = next(i for i, m in enumerate(mounts) if m["destination"] == "/sys")
        mounts[sysfs] = {
            "destination": "/sys",
            "type": "bind",
            "source": "/sys",
            "options": ["bind", "nosuid", "noexec", "nodev", "ro"],
        }
    for b in spec.binds:
        options = ["rbind", "nosuid", "nodev"] + (["ro"] if b.read_only else ["rw"])
        mounts.append({"destination": b.destination, "type": "bind", "source": b.source, "options": options})
    for m in spec.user_mounts:
        ro = ["ro"] if m.read_only else ["rw"]
        if isinstance(m, TmpfsMount):
            mode = f"mode={m.mode:o}" if m.mode is not None else "mode=1777"
            options = ["nosuid", "nodev", mode, f"size={m.size}", *ro]
            source = "tmpfs"
            kind = "tmpfs"
        else:
            options = ["rbind", "nosuid", "nodev", *(["noexec"] if m.no_exec else []), *ro]
            source = m.source
            kind = "bind"
        mounts.append({"destination": m.destination, "type": kind, "source": source, "options": options})
    return mounts


def build_config(spec: BundleSpec) -> dict[str, Any]:
    """The complete OCI runtime config for ``spec``."""
    network: dict[str, str] = {"type": "network"}
    if spec.netns_path:
        network["path"] = spec.netns_path
    mapping = [{"containerID": 0, "hostID": spec.id_range.base, "size": spec.id_range.size}]
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in ALLOWED_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        devices.append(rule)
    return {
        "ociVersion": OCI_VERSION,
        "process": process_json(spec.process),
        "root": {"path": spec.rootfs, "readonly": False},
        "hostname": spec.hostname,
        "mounts": _mounts(spec),
        "annotations": dict(spec.annotations),
        "linux": {
            "uidMappings": mapping,
            "gidMappings": mapping,
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
                {"type": "user"},
                *([network] if spec.netns_path != HOST_NETNS else []),
            ],
            "cgroupsPath": spec.cgroups_path,
            "resources": {**(spec.resources or {}), "devices": devices},
            "maskedPaths": list(MASKED_PATHS) + (joined_netns_masked() if spec.netns_path else []),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_profile(),
        },
    }
