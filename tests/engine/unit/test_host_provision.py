"""The provisioning plan and its application, on fake hosts (nothing is mounted or installed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from engine.cgroups.layout import detect_cgroup_layout
from engine.errors import HostNotReady
from engine.host.provision import (
    Action,
    HostFacts,
    apply_actions,
    gather_facts,
    plan_cgroups,
    plan_setup,
)
from engine.paths import EnginePaths

# Fake hosts: mountinfo text plus the files below a fake root that setup reads.
TMPFS = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
UNIFIED = "51 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
PURE_V2 = "27 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
WANTED_V1 = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"]


def v1_lines(controllers: list[str]) -> str:
    return "".join(
        f"{32 + i} 31 0:{40 + i} / /sys/fs/cgroup/{c} rw - cgroup cgroup rw,{c}\n"
        for i, c in enumerate(controllers)
    )


HYBRID_HUGETLB_ON_V2 = TMPFS + v1_lines(WANTED_V1) + UNIFIED
V1_EVERYTHING = TMPFS + v1_lines([*WANTED_V1, "hugetlb"])
KERNEL = [*WANTED_V1, "hugetlb", "net_cls"]


def all_installed(names: Sequence[str]) -> set[str]:
    return set(names)


def none_installed(names: Sequence[str]) -> set[str]:
    return set()


def fake_host(
    tmp_path: Path,
    mountinfo: str,
    v2_dir: str | None,
    controllers: str = "",
    subtree: str = "",
    ip_forward: str = "0\n",
) -> Path:
    """A fake host root with /proc/cgroups, ip_forward and the v2 hierarchy's files."""
    root = tmp_path / "host"
    (root / "proc/sys/net/ipv4").mkdir(parents=True)
    (root / "proc/cgroups").write_text(
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\n" + "".join(f"{c}\t0\t1\t1\n" for c in KERNEL)
    )
    if v2_dir is not None:
        d = root / v2_dir.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.controllers").write_text(controllers + "\n")
        (d / "cgroup.subtree_control").write_text(subtree + "\n")
    (root / "proc/sys/net/ipv4/ip_forward").write_text(ip_forward)
    (root / "sys/fs/cgroup").mkdir(parents=True, exist_ok=True)
    return root


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, cmd: Sequence[str]) -> None:
        self.commands.append(list(cmd))


def test_hybrid_plan_mounts_hugetlb_as_v1(tmp_path: Path) -> None:
    root = fake_host(tmp_path, HYBRID_HUGETLB_ON_V2, "/sys/fs/cgroup/unified", "hugetlb")
    facts = gather_facts(
        tmp_path / "engine", fs_root=root, mountinfo=HYBRID_HUGETLB_ON_V2, package_query=all_installed
    )
    plan = plan_setup(facts)
    kinds = [a.kind for a in plan.actions]
    assert kinds == ["mount-cgroup-v1", "ip-forward", "engine-root"]
    mount = plan.actions[0]
    assert mount.mkdir == PurePosixPath("/sys/fs/cgroup/hugetlb")
    assert mount.command == ("mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb")
    assert "hybrid" in mount.description


def test_hybrid_plan_disables_v2_controller_in_use_first(tmp_path: Path) -> None:
    # blkio is not on v1 here: the kernel attached it to v2 (as "io"), where it is enabled.
    text = TMPFS + v1_lines([c for c in WANTED_V1 if c != "blkio"]) + UNIFIED
    root = fake_host(tmp_path, text, "/sys/fs/cgroup/unified", "hugetlb io", "io")
    layout = detect_cgroup_layout(text, fs_root=root)
    assert layout.controllers_only_on_v2 == {"hugetlb", "io"}
    plan = plan_cgroups(layout)
    assert [a.kind for a in plan.actions] == ["disable-v2-controllers", "mount-cgroup-v1", "mount-cgroup-v1"]
    assert plan.actions[0].write == (PurePosixPath("/sys/fs/cgroup/unified/cgroup.subtree_control"), "-io")
    # io is v2's name for v1's blkio
    assert sorted(a.command[4] for a in plan.actions[1:]) == ["blkio", "hugetlb"]
    assert plan.actions[1].mkdir is not None


def test_v1_with_everything_plans_nothing(tmp_path: Path) -> None:
    root = fake_host(tmp_path, V1_EVERYTHING, None, ip_forward="1\n")
    EnginePaths(tmp_path / "engine").ensure()
    facts = gather_facts(
        tmp_path / "engine", fs_root=root, mountinfo=V1_EVERYTHING, package_query=all_installed
    )
    plan = plan_setup(facts)
    assert plan.actions == []
    assert plan.notes == []


def test_legacy_plan_mounts_missing_wanted_controller(tmp_path: Path) -> None:
    text = TMPFS + v1_lines(["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio"])
    root = fake_host(tmp_path, text, None)
    plan = plan_cgroups(detect_cgroup_layout(text, fs_root=root))
    assert [(a.kind, a.command[4]) for a in plan.actions] == [("mount-cgroup-v1", "pids")]


def test_symlinked_target_is_refused(tmp_path: Path) -> None:
    root = fake_host(tmp_path, HYBRID_HUGETLB_ON_V2, "/sys/fs/cgroup/unified", "hugetlb")
    (root / "sys/fs/cgroup/hugetlb").symlink_to("memory")
    facts = gather_facts(
        tmp_path / "e", fs_root=root, mountinfo=HYBRID_HUGETLB_ON_V2, package_query=all_installed
    )
    with pytest.raises(HostNotReady, match="symlink"):
        plan_setup(facts)


def test_pure_v2_plan_enables_missing_controllers(tmp_path: Path) -> None:
    root = fake_host(tmp_path, PURE_V2, "/sys/fs/cgroup", "cpuset cpu io memory pids hugetlb", "memory")
    plan = plan_cgroups(detect_cgroup_layout(PURE_V2, fs_root=root))
    (action,) = plan.actions
    assert action.kind == "enable-v2-controllers"
    assert action.write == (PurePosixPath("/sys/fs/cgroup/cgroup.subtree_control"), "+cpuset +cpu +io +pids")


def test_pure_v2_plan_notes_missing_controllers(tmp_path: Path) -> None:
    root = fake_host(tmp_path, PURE_V2, "/sys/fs/cgroup", "cpu memory pids", "cpu memory pids")
    plan = plan_cgroups(detect_cgroup_layout(PURE_V2, fs_root=root))
    assert plan.actions == []
    assert "cpuset, io" in plan.notes[0]


def test_missing_packages_plan_apt_first(tmp_path: Path) -> None:
    root = fake_host(tmp_path, V1_EVERYTHING, None, ip_forward="1\n")
    facts = gather_facts(
        tmp_path / "engine", fs_root=root, mountinfo=V1_EVERYTHING, package_query=none_installed
    )
    plan = plan_setup(facts)
    assert plan.actions[0].kind == "apt-install"
    assert "crun" in plan.actions[0].packages and "conmon" in plan.actions[0].packages


def test_apply_writes_below_fs_root_and_runs_commands(tmp_path: Path) -> None:
    text = TMPFS + v1_lines([c for c in WANTED_V1 if c != "blkio"]) + UNIFIED
    root = fake_host(tmp_path, text, "/sys/fs/cgroup/unified", "hugetlb io", "io")
    facts = gather_facts(tmp_path / "engine", fs_root=root, mountinfo=text, package_query=all_installed)
    plan = plan_setup(facts)
    run = Recorder()
    lines: list[str] = []
    apply_actions(plan.actions, fs_root=root, run=run, log=lines.append, check_root=False)
    assert (root / "sys/fs/cgroup/unified/cgroup.subtree_control").read_text() == "-io"
    assert (root / "proc/sys/net/ipv4/ip_forward").read_text() == "1"
    assert (root / "sys/fs/cgroup/hugetlb").is_dir() and (root / "sys/fs/cgroup/blkio").is_dir()
    assert sorted(c[4] for c in run.commands) == ["blkio", "hugetlb"]
    assert all(c[:3] == ["mount", "-t", "cgroup"] for c in run.commands)
    assert EnginePaths(tmp_path / "engine").containers.is_dir()
    assert len(lines) == len(plan.actions)


def test_second_plan_after_apply_is_empty_for_file_changes(tmp_path: Path) -> None:
    root = fake_host(tmp_path, V1_EVERYTHING, None)
    facts = gather_facts(
        tmp_path / "engine", fs_root=root, mountinfo=V1_EVERYTHING, package_query=all_installed
    )
    apply_actions(
        plan_setup(facts).actions, fs_root=root, run=Recorder(), log=lambda _: None, check_root=False
    )
    again = gather_facts(
        tmp_path / "engine", fs_root=root, mountinfo=V1_EVERYTHING, package_query=all_installed
    )
    assert plan_setup(again).actions == []


def test_apply_apt_uses_apt_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.host.packages as packages

    monkeypatch.setattr(packages, "_POLICY_RC", tmp_path / "policy-rc.d")
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    run = Recorder()
    seen_policy: list[bool] = []

    def apt(cmd: Sequence[str]) -> None:
        seen_policy.append((tmp_path / "policy-rc.d").exists())
        run(cmd)

    apply_actions(
        [Action(kind="apt-install", description="x", packages=("crun", "tini"))],
        apt_run=apt,
        log=lambda _: None,
        check_root=False,
    )
    assert run.commands == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "crun", "tini"],
    ]
    assert seen_policy == [True, True], "daemons must not start while apt runs"
    assert not (tmp_path / "policy-rc.d").exists(), "the temporary policy-rc.d is removed again"


def test_unreadable_ip_forward_is_a_note(tmp_path: Path) -> None:
    root = fake_host(tmp_path, V1_EVERYTHING, None)
    (root / "proc/sys/net/ipv4/ip_forward").unlink()
    facts = gather_facts(
        tmp_path / "engine", fs_root=root, mountinfo=V1_EVERYTHING, package_query=all_installed
    )
    assert isinstance(facts, HostFacts) and facts.ip_forward is None
    plan = plan_setup(facts)
    assert "ip-forward" not in [a.kind for a in plan.actions]
    assert any("ip_forward" in n for n in plan.notes)


def test_unwritable_engine_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    action = Action(kind="engine-root", description="create the engine root", engine_root=blocker / "root")
    with pytest.raises(HostNotReady, match="cannot create the engine root"):
        apply_actions([action], log=lambda _: None, check_root=False)
