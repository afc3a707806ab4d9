"""Which cgroup hierarchies this host has mounted, and where.

A Linux host mounts cgroups in one of three ways:

- **unified** (pure v2): a ``cgroup2`` filesystem at ``/sys/fs/cgroup``;
- **legacy** (pure v1): a tmpfs at ``/sys/fs/cgroup`` with one ``cgroup``
  mount per controller (or group of controllers) below it;
- **hybrid**: legacy plus a ``cgroup2`` mount, usually at
  ``/sys/fs/cgroup/unified``, that tracks processes only.

crun 1.8 supports hybrid hosts only when *no* controller is attached to the
v2 hierarchy (its ``cgroup.controllers`` is empty); otherwise it refuses every
container. :func:`detect_cgroup_layout` reports what is mounted so that
``hpctl host setup`` can fix that and the runtime can find the cgroup
directories of a container.

Everything here reads files only. The seams are the mountinfo text and the
file-system root under which cgroup files are read, so unit tests can pass a
fake tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from engine.errors import HostNotReady, InvalidSpec

CGROUP_ROOT = PurePosixPath("/sys/fs/cgroup")
"""Where every distribution mounts cgroups (and where crun looks for them)."""

V1_CONTROLLER_NAMES = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "debug",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)
"""Controller names a v1 ``cgroup`` mount can carry in its options."""

V2_TO_V1_NAME = {"io": "blkio"}
"""v2 controllers whose v1 counterpart has another name."""


def v1_name(controller: str) -> str:
    """The v1 name of a controller given by its v2 name (``io`` -> ``blkio``)."""
    return V2_TO_V1_NAME.get(controller, controller)


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/<pid>/mountinfo``, reduced to what we use."""

    mount_point: PurePosixPath
    root: str
    fstype: str
    source: str
    super_options: tuple[str, ...]


def _unescape(field_text: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space and friends)."""
    out: list[str] = []
    i = 0
    while i < len(field_text):
        ch = field_text[i]
        digits = field_text[i + 1 : i + 4]
        if ch == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse the text of ``/proc/self/mountinfo`` (see proc(5)).

    Malformed lines are skipped: the kernel never writes them, and a test
    fixture with a stray blank line should not break detection.
    """
    entries: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        super_options = tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else ()
        entries.append(
            MountEntry(
                mount_point=PurePosixPath(_unescape(fields[4])),
                root=_unescape(fields[3]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_options=super_options,
            )
        )
    return entries


@dataclass(frozen=True)
class CgroupLayout:
    """The cgroup hierarchies mounted on this host.

    ``version`` is 2 when cgroup2 is mounted at ``/sys/fs/cgroup`` (unified),
    else 1; ``hybrid`` is true for v1 hosts that also mount cgroup2
    somewhere (usually ``/sys/fs/cgroup/unified``). ``v1_mounts`` maps each
    v1 controller to its mount point (co-mounted controllers share one),
    ``named_v1_mounts`` the named hierarchies (``name=systemd``).
    ``v2_controllers`` are the controllers attached to the v2 hierarchy (its
    ``cgroup.controllers``), ``v2_subtree_control`` those enabled for the
    children of its root. ``kernel_controllers`` are the controllers the
    kernel has enabled (``/proc/cgroups``; empty when unreadable).
    """

    version: Literal[1, 2]
    hybrid: bool
    root: PurePosixPath = CGROUP_ROOT
    v1_mounts: Mapping[str, PurePosixPath] = field(default_factory=dict)
    named_v1_mounts: Mapping[str, PurePosixPath] = field(default_factory=dict)
    v2_mount: PurePosixPath | None = None
    v2_controllers: frozenset[str] = frozenset()
    v2_subtree_control: frozenset[str] = frozenset()
    kernel_controllers: frozenset[str] = frozenset()

    @property
    def mode(self) -> Literal["unified", "hybrid", "legacy"]:
        """``unified``, ``hybrid`` or ``legacy``, the names crun and systemd use."""
        if self.version == 2:
            return "unified"
        return "hybrid" if self.hybrid else "legacy"

    @property
    def controllers_only_on_v2(self) -> frozenset[str]:
        """On a hybrid host: the controllers attached to v2 instead of v1.

        crun refuses every container while this is not empty. Empty on
        unified and legacy hosts.
        """
        if self.version == 2 or not self.hybrid:
            return frozenset()
        return frozenset(c for c in self.v2_controllers if v1_name(c) not in self.v1_mounts)

    def hierarchy_dirs(self) -> list[PurePosixPath]:
        """Every distinct hierarchy mount point: the v1 ones, then the v2 one."""
        seen: list[PurePosixPath] = []
        for mp in [*self.v1_mounts.values(), *self.named_v1_mounts.values()]:
            if mp not in seen:
                seen.append(mp)
        if self.v2_mount is not None and self.v2_mount not in seen:
            seen.append(self.v2_mount)
        return seen

    def cgroup_dirs(self, cgroup_path: str) -> list[PurePosixPath]:
        """The directories an absolute OCI ``cgroupsPath`` maps to, one per hierarchy.

        Raises InvalidSpec when ``cgroup_path`` is not absolute or tries to
        climb out with ``..``.
        """
        rel = PurePosixPath(cgroup_path)
        if not rel.is_absolute() or ".." in rel.parts or rel == PurePosixPath("/"):
            raise InvalidSpec(f"cgroup path must be absolute and below the root: {cgroup_path!r}")
        return [mp / rel.relative_to("/") for mp in self.hierarchy_dirs()]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (for ``hpctl host info --json``)."""
        return {
            "version": self.version,
            "mode": self.mode,
            "hybrid": self.hybrid,
            "root": str(self.root),
            "v1_mounts": {k: str(v) for k, v in sorted(self.v1_mounts.items())},
            "named_v1_mounts": {k: str(v) for k, v in sorted(self.named_v1_mounts.items())},
            "v2_mount": str(self.v2_mount) if self.v2_mount is not None else None,
            "v2_controllers": sorted(self.v2_controllers),
            "v2_subtree_control": sorted(self.v2_subtree_control),
            "controllers_only_on_v2": sorted(self.controllers_only_on_v2),
        }


def host_path(fs_root: Path, path: PurePosixPath) -> Path:
    """``path`` (absolute, as the kernel reports it) below ``fs_root``."""
    return Path(fs_root) / path.relative_to("/")


def _read_words(path: Path) -> frozenset[str]:
    try:
        return frozenset(path.read_text().split())
    except OSError:
        return frozenset()


def parse_proc_cgroups(text: str) -> frozenset[str]:
    """The enabled controllers listed in ``/proc/cgroups`` text."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        cols = line.split()
        if len(cols) >= 4 and cols[3] == "1":
            names.add(cols[0])
    return frozenset(names)


def _prefer(current: PurePosixPath | None, candidate: PurePosixPath, root: PurePosixPath) -> bool:
    """Whether ``candidate`` is a better mount point than ``current`` for one hierarchy."""
    if current is None:
        return True
    return current.parent != root and candidate.parent == root


def layout_from_mounts(
    mounts: Iterable[MountEntry],
    fs_root: Path = Path("/"),
    cgroup_root: PurePosixPath = CGROUP_ROOT,
    proc_cgroups: str | None = None,
) -> CgroupLayout:
    """Build the layout from parsed mounts, reading v2 files below ``fs_root``.

    Raises HostNotReady when nothing cgroup-like is mounted at ``cgroup_root``.
    """
    v1: dict[str, PurePosixPath] = {}
    named: dict[str, PurePosixPath] = {}
    v2_mount: PurePosixPath | None = None
    unified_at_root = False
    root_is_mounted = False
    for m in mounts:
        inside = m.mount_point == cgroup_root or cgroup_root in m.mount_point.parents
        if not inside:
            continue
        if m.mount_point == cgroup_root:
            root_is_mounted = True
        if m.fstype == "cgroup2":
            if m.mount_point == cgroup_root:
                unified_at_root = True
                v2_mount = m.mount_point
            elif not unified_at_root and _prefer(v2_mount, m.mount_point, cgroup_root):
                v2_mount = m.mount_point
        elif m.fstype == "cgroup":
            for opt in m.super_options:
                if opt in V1_CONTROLLER_NAMES:
                    if _prefer(v1.get(opt), m.mount_point, cgroup_root):
                        v1[opt] = m.mount_point
                elif opt.startswith("name="):
                    key = opt
                    if _prefer(named.get(key), m.mount_point, cgroup_root):
                        named[key] = m.mount_point
    if not root_is_mounted and not v1 and v2_mount is None:
        raise HostNotReady(
            f"no cgroup file system is mounted at {cgroup_root}; mount one "
            f"(e.g. `mount -t cgroup2 none {cgroup_root}`) and run `hpctl host setup` again"
        )
    v2_controllers: frozenset[str] = frozenset()
    v2_subtree: frozenset[str] = frozenset()
    if v2_mount is not None:
        v2_controllers = _read_words(host_path(fs_root, v2_mount / "cgroup.controllers"))
        v2_subtree = _read_words(host_path(fs_root, v2_mount / "cgroup.subtree_control"))
    if proc_cgroups is None:
        try:
            proc_cgroups = host_path(fs_root, PurePosixPath("/proc/cgroups")).read_text()
        except OSError:
            proc_cgroups = ""
    if unified_at_root:
        return CgroupLayout(
            version=2,
            hybrid=False,
            root=cgroup_root,
            v2_mount=v2_mount,
            v2_controllers=v2_controllers,
            v2_subtree_control=v2_subtree,
            kernel_controllers=parse_proc_cgroups(proc_cgroups),
        )
    return CgroupLayout(
        version=1,
        hybrid=v2_mount is not None,
        root=cgroup_root,
        v1_mounts=v1,
        named_v1_mounts=named,
        v2_mount=v2_mount,
        v2_controllers=v2_controllers,
        v2_subtree_control=v2_subtree,
        kernel_controllers=parse_proc_cgroups(proc_cgroups),
    )


def detect_cgroup_layout(
    mountinfo: str | None = None,
    fs_root: Path = Path("/"),
    cgroup_root: PurePosixPath = CGROUP_ROOT,
) -> CgroupLayout:
    """Detect how cgroups are mounted on this host.

    ``mountinfo`` defaults to the text of ``/proc/self/mountinfo`` read below
    ``fs_root``; pass both to describe a fake host in tests. Needs no
    privileges. Raises HostNotReady when no cgroup file system is mounted.
    """
    if mountinfo is None:
        mountinfo = host_path(fs_root, PurePosixPath("/proc/self/mountinfo")).read_text()
    return layout_from_mounts(parse_mountinfo(mountinfo), fs_root=fs_root, cgroup_root=cgroup_root)
