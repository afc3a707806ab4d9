"""The default seccomp profile: allow by default, refuse the syscalls a tenant never needs.

It is a deny list on top of the dropped capabilities: kernel module and
keyring calls, mounting, new namespaces (including user namespaces, which
are otherwise open to unprivileged processes), clock changes, BPF, perf,
io_uring and handle-based file access all fail with EPERM.
"""

from __future__ import annotations

import platform
from typing import Any

EPERM = 1
ENOSYS = 38
CLONE_NEWUSER = 0x10000000

DENIED_SYSCALLS: tuple[str, ...] = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

# The host's native ABI and the compat ABIs a process on it could switch to.
ARCHITECTURES_BY_MACHINE: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


def host_architectures() -> tuple[str, ...]:
    """The seccomp architectures to filter on this host (fewer arches compile faster)."""
    machine = platform.machine()
    return ARCHITECTURES_BY_MACHINE.get(
        machine, tuple(a for v in ARCHITECTURES_BY_MACHINE.values() for a in v)
    )


def default_profile() -> dict[str, Any]:
    """The OCI `linux.seccomp` object HostPanel applies to every container."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(host_architectures()),
        "syscalls": [
            {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            # glibc falls back to clone() when clone3 is missing; clone3's flags
            # live in memory that seccomp cannot inspect, so refuse it as absent.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [
                    {
                        "index": 0,
                        "value": CLONE_NEWUSER,
                        "valueTwo": CLONE_NEWUSER,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
        ],
    }
