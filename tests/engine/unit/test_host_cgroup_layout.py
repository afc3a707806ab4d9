"""Cgroup layout detection on fake hosts (mountinfo text + a fake /sys tree)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from engine.cgroups.layout import detect_cgroup_layout, parse_mountinfo, parse_proc_cgroups
from engine.errors import HostNotReady, InvalidSpec

CG = PurePosixPath("/sys/fs/cgroup")

PURE_V2 = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
"""

V1_CONTROLLERS = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"]


def v1_lines(controllers: list[str], start: int = 32) -> str:
    return "".join(
        f"{start + i} 31 0:{40 + i} / /sys/fs/cgroup/{c} rw,relatime - cgroup cgroup rw,{c}\n"
        for i, c in enumerate(controllers)
    )


TMPFS = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
SYSTEMD = "50 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
UNIFIED = "51 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"

HYBRID_HUGETLB_ON_V2 = TMPFS + v1_lines(V1_CONTROLLERS) + SYSTEMD + UNIFIED
V1_EVERYTHING = TMPFS + v1_lines([*V1_CONTROLLERS, "hugetlb", "net_cls", "perf_event"])

PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t15\t1
devices\t5\t1\t1
freezer\t6\t1\t1
net_cls\t0\t1\t1
hugetlb\t0\t1\t1
pids\t8\t1\t1
rdma\t0\t1\t0
"""


def fake_sys(root: Path, v2_dir: str | None, controllers: str = "", subtree: str = "") -> Path:
    """A fake host root with /proc/cgroups and, optionally, a v2 hierarchy's files."""
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cgroups").write_text(PROC_CGROUPS)
    if v2_dir is not None:
        d = root / v2_dir.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.controllers").write_text(controllers + "\n")
        (d / "cgroup.subtree_control").write_text(subtree + "\n")
    return root


def test_pure_v2(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, "/sys/fs/cgroup", "cpuset cpu io memory hugetlb pids rdma misc", "memory pids")
    layout = detect_cgroup_layout(PURE_V2, fs_root=root)
    assert layout.version == 2
    assert layout.hybrid is False
    assert layout.mode == "unified"
    assert layout.v2_mount == CG
    assert layout.v1_mounts == {}
    assert layout.v2_controllers == {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
    assert layout.v2_subtree_control == {"memory", "pids"}
    assert layout.controllers_only_on_v2 == frozenset()
    assert layout.cgroup_dirs("/hostpanel/t1/c1") == [CG / "hostpanel/t1/c1"]


def test_hybrid_with_hugetlb_only_on_v2(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, "/sys/fs/cgroup/unified", "hugetlb")
    layout = detect_cgroup_layout(HYBRID_HUGETLB_ON_V2, fs_root=root)
    assert layout.version == 1
    assert layout.hybrid is True
    assert layout.mode == "hybrid"
    assert layout.v2_mount == CG / "unified"
    assert set(layout.v1_mounts) == set(V1_CONTROLLERS)
    assert layout.v1_mounts["memory"] == CG / "memory"
    assert layout.named_v1_mounts == {"name=systemd": CG / "systemd"}
    assert layout.controllers_only_on_v2 == {"hugetlb"}
    assert "hugetlb" in layout.kernel_controllers
    assert "rdma" not in layout.kernel_controllers  # disabled in the kernel
    dirs = layout.cgroup_dirs("/x")
    assert CG / "unified/x" in dirs and CG / "systemd/x" in dirs and CG / "memory/x" in dirs
    assert layout.to_dict()["controllers_only_on_v2"] == ["hugetlb"]


def test_hybrid_with_empty_v2_is_fine_for_crun(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, "/sys/fs/cgroup/unified", "")
    layout = detect_cgroup_layout(HYBRID_HUGETLB_ON_V2, fs_root=root)
    assert layout.hybrid is True
    assert layout.controllers_only_on_v2 == frozenset()


def test_v1_with_everything(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, None)
    layout = detect_cgroup_layout(V1_EVERYTHING, fs_root=root)
    assert layout.version == 1
    assert layout.hybrid is False
    assert layout.mode == "legacy"
    assert layout.v2_mount is None
    assert {"hugetlb", "net_cls", "perf_event", "memory"} <= set(layout.v1_mounts)
    assert layout.controllers_only_on_v2 == frozenset()


def test_comounted_controllers_share_a_mount_point(tmp_path: Path) -> None:
    text = TMPFS + (
        "40 31 0:40 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "41 31 0:41 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n"
    )
    layout = detect_cgroup_layout(text, fs_root=fake_sys(tmp_path, None))
    assert layout.v1_mounts["cpu"] == layout.v1_mounts["cpuacct"] == CG / "cpu,cpuacct"
    assert layout.hierarchy_dirs() == [CG / "cpu,cpuacct", CG / "net_cls,net_prio"]


def test_no_cgroups_mounted_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HostNotReady, match="no cgroup file system"):
        detect_cgroup_layout("28 1 8:1 / / rw - ext4 /dev/sda1 rw\n", fs_root=tmp_path)


def test_cgroup_dirs_rejects_relative_and_escaping_paths(tmp_path: Path) -> None:
    layout = detect_cgroup_layout(PURE_V2, fs_root=fake_sys(tmp_path, "/sys/fs/cgroup"))
    for bad in ("relative/x", "/a/../../etc", "/"):
        with pytest.raises(InvalidSpec):
            layout.cgroup_dirs(bad)


def test_parse_mountinfo_unescapes_and_skips_garbage() -> None:
    text = (
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
        "\nbad\n"
    )
    (entry,) = parse_mountinfo(text)
    assert entry.mount_point == PurePosixPath("/mnt/with space")
    assert entry.root == "/mnt1"
    assert entry.fstype == "ext3"
    assert entry.super_options == ("rw", "errors=continue")


def test_parse_proc_cgroups_keeps_enabled_only() -> None:
    assert parse_proc_cgroups(PROC_CGROUPS) >= {"cpu", "memory", "hugetlb", "net_cls"}
    assert "rdma" not in parse_proc_cgroups(PROC_CGROUPS)


def test_detects_this_host() -> None:
    layout = detect_cgroup_layout()
    assert layout.version in (1, 2)
    assert layout.mode in ("unified", "hybrid", "legacy")
