"""`hpctl host setup`: make this machine able to run HostPanel containers.

Three phases, each testable on its own:

1. :func:`gather_facts` reads the host (packages, cgroup layout, sysctls,
   engine root) without changing anything;
2. :func:`plan_setup` turns facts into a list of :class:`Action` (pure logic:
   unit tests feed it fake facts);
3. :func:`apply_actions` performs them; kernel files are written below
   ``fs_root`` and commands go through a ``run`` callable, the two seams.

An action is planned only when the host differs from what we need, so a
second run plans nothing: setup is idempotent.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from engine.cgroups.layout import CgroupLayout, detect_cgroup_layout, host_path, v1_name
from engine.errors import HostNotReady
from engine.host import packages
from engine.host.checks import HostBinaries, check_binaries, crun_smoke_test
from engine.paths import EnginePaths

V2_WANTED_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")
"""On unified hosts: controllers enabled for the root's children, so per-container limits work."""

V1_WANTED_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer")
"""On legacy/hybrid hosts: controllers that must be mounted as v1 for crun's limits."""

IP_FORWARD = PurePosixPath("/proc/sys/net/ipv4/ip_forward")

ActionKind = Literal[
    "apt-install",
    "disable-v2-controllers",
    "mount-cgroup-v1",
    "enable-v2-controllers",
    "ip-forward",
    "engine-root",
]

Runner = Callable[[Sequence[str]], None]


@dataclass(frozen=True)
class Action:
    """One change to the host: install packages, run a command, write a kernel file, create dirs."""

    kind: ActionKind
    description: str
    packages: tuple[str, ...] = ()
    mkdir: PurePosixPath | None = None
    command: tuple[str, ...] = ()
    write: tuple[PurePosixPath, str] | None = None
    engine_root: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        out: dict[str, Any] = {"kind": self.kind, "description": self.description}
        if self.packages:
            out["packages"] = list(self.packages)
        if self.command:
            out["command"] = list(self.command)
        if self.write is not None:
            out["write"] = {"path": str(self.write[0]), "value": self.write[1]}
        return out


@dataclass(frozen=True)
class HostFacts:
    """What :func:`gather_facts` read from the host."""

    missing_packages: tuple[str, ...]
    layout: CgroupLayout
    ip_forward: str | None
    engine_root: Path
    engine_root_missing: tuple[Path, ...]
    symlinked_cgroup_dirs: frozenset[str] = frozenset()


@dataclass
class SetupPlan:
    """The actions setup would take, and notes worth telling the operator."""

    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def engine_root_missing(paths: EnginePaths) -> tuple[Path, ...]:
    """The directories of the engine layout that do not exist yet."""
    return tuple(d for d in paths.layout_dirs() if not d.is_dir())


def gather_facts(
    engine_root: Path,
    fs_root: Path = Path("/"),
    mountinfo: str | None = None,
    check_packages: bool = True,
    package_query: packages.StatusQuery | None = None,
) -> HostFacts:
    """Read everything setup needs to decide, changing nothing.

    ``fs_root`` and ``mountinfo`` describe a fake host in tests. Raises
    HostNotReady when no cgroup file system is mounted.
    """
    layout = detect_cgroup_layout(mountinfo=mountinfo, fs_root=fs_root)
    try:
        ip_forward: str | None = host_path(fs_root, IP_FORWARD).read_text().strip()
    except OSError:
        ip_forward = None
    symlinked = frozenset(
        name
        for name in {v1_name(c) for c in layout.v2_controllers} | set(V1_WANTED_CONTROLLERS)
        if host_path(fs_root, layout.root / name).is_symlink()
    )
    missing = tuple(packages.missing_packages(query=package_query)) if check_packages else ()
    return HostFacts(
        missing_packages=missing,
        layout=layout,
        ip_forward=ip_forward,
        engine_root=engine_root,
        engine_root_missing=engine_root_missing(EnginePaths(engine_root)),
        symlinked_cgroup_dirs=symlinked,
    )


def plan_cgroups(layout: CgroupLayout, symlinked: frozenset[str] = frozenset()) -> SetupPlan:
    """The cgroup changes crun needs on this layout.

    Hybrid: every controller attached to the v2 hierarchy moves to its own
    v1 mount (crun 1.8 refuses all containers otherwise), after being
    disabled in the v2 root's subtree_control if it was enabled there.
    Legacy/hybrid: the v1 controllers crun uses for limits are mounted if the
    kernel has them and they are not. Unified: the wanted controllers are
    enabled in the root's ``cgroup.subtree_control``.
    """
    plan = SetupPlan()
    if layout.version == 2:
        assert layout.v2_mount is not None
        wanted = [c for c in V2_WANTED_CONTROLLERS if c in layout.v2_controllers]
        absent = [c for c in V2_WANTED_CONTROLLERS if c not in layout.v2_controllers]
        if absent:
            plan.notes.append(
                f"cgroup v2 has no {', '.join(absent)} controller: those limits are unavailable"
            )
        todo = [c for c in wanted if c not in layout.v2_subtree_control]
        if todo:
            target = layout.v2_mount / "cgroup.subtree_control"
            plan.actions.append(
                Action(
                    kind="enable-v2-controllers",
                    description=f"enable {', '.join(todo)} for child cgroups in {target}",
                    write=(target, " ".join(f"+{c}" for c in todo)),
                )
            )
        return plan

    on_v2 = sorted(layout.controllers_only_on_v2)
    if on_v2:
        assert layout.v2_mount is not None
        enabled = [c for c in on_v2 if c in layout.v2_subtree_control]
        if enabled:
            target = layout.v2_mount / "cgroup.subtree_control"
            plan.actions.append(
                Action(
                    kind="disable-v2-controllers",
                    description=f"disable {', '.join(enabled)} in {target} so they can move to v1",
                    write=(target, " ".join(f"-{c}" for c in enabled)),
                )
            )
    to_mount = [v1_name(c) for c in on_v2]
    if layout.kernel_controllers:
        to_mount += [
            c
            for c in V1_WANTED_CONTROLLERS
            if c in layout.kernel_controllers and c not in layout.v1_mounts and c not in to_mount
        ]
    unavailable = [
        c for c in V1_WANTED_CONTROLLERS if layout.kernel_controllers and c not in layout.kernel_controllers
    ]
    if unavailable:
        plan.notes.append(f"the kernel has no {', '.join(unavailable)} cgroup controller")
    for controller in to_mount:
        target = layout.root / controller
        if controller in symlinked:
            raise HostNotReady(
                f"{target} is a symlink but {controller} is not mounted there; mount it by hand with "
                f"`mount -t cgroup -o {controller} cgroup <dir>`"
            )
        why = (
            "crun refuses hybrid hosts while a controller is on cgroup v2"
            if controller in {v1_name(c) for c in on_v2}
            else "crun needs it for container limits"
        )
        plan.actions.append(
            Action(
                kind="mount-cgroup-v1",
                description=f"mount the {controller} controller as cgroup v1 at {target} ({why})",
                mkdir=target,
                command=("mount", "-t", "cgroup", "-o", controller, "cgroup", str(target)),
            )
        )
    return plan


def plan_setup(facts: HostFacts) -> SetupPlan:
    """Every action setup would take on a host described by ``facts`` (pure)."""
    plan = SetupPlan()
    if facts.missing_packages:
        plan.actions.append(
            Action(
                kind="apt-install",
                description=f"install {' '.join(facts.missing_packages)} with apt",
                packages=facts.missing_packages,
            )
        )
    cg = plan_cgroups(facts.layout, facts.symlinked_cgroup_dirs)
    plan.actions += cg.actions
    plan.notes += cg.notes
    if facts.ip_forward is None:
        plan.notes.append(f"cannot read {IP_FORWARD}: container networks will not route")
    elif facts.ip_forward != "1":
        plan.actions.append(
            Action(kind="ip-forward", description="enable IPv4 forwarding", write=(IP_FORWARD, "1"))
        )
    if facts.engine_root_missing:
        plan.actions.append(
            Action(
                kind="engine-root",
                description=f"create the engine root {facts.engine_root}",
                engine_root=facts.engine_root,
            )
        )
    return plan


def _run(cmd: Sequence[str]) -> None:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise HostNotReady(f"{cmd[0]} not found; install util-linux") from exc
    if proc.returncode != 0:
        raise HostNotReady(
            f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip() or proc.returncode}"
        )


def _write_kernel_file(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EBUSY:
            hint = (
                " (the cgroup has processes or children using the controller: on cgroup v2 a "
                "non-root cgroup must be empty before enabling controllers for its children)"
            )
        raise HostNotReady(f"cannot write {value!r} to {path}: {exc.strerror}{hint}") from exc


def apply_actions(
    actions: Sequence[Action],
    fs_root: Path = Path("/"),
    run: Runner = _run,
    apt_run: packages.Runner | None = None,
    log: Callable[[str], None] = print,
    check_root: bool = True,
) -> None:
    """Perform ``actions`` in order, logging each; stop at the first failure.

    Kernel files and mount points are resolved below ``fs_root``; commands go
    through ``run`` and apt commands through ``apt_run``. Raises HostNotReady
    when not root (for anything but creating an engine root; ``check_root``
    False skips that check for fake hosts) or when a step fails.
    """
    for action in actions:
        if check_root and action.kind != "engine-root" and os.geteuid() != 0:
            raise HostNotReady(f"cannot {action.description}: needs root; run `sudo hpctl host setup`")
        log(f"- {action.description}")
        if action.kind == "apt-install":
            if apt_run is None:
                packages.install_packages(action.packages)
            else:
                packages.install_packages(action.packages, run=apt_run)
            continue
        try:
            if action.engine_root is not None:
                EnginePaths(action.engine_root).ensure()
            if action.mkdir is not None:
                host_path(fs_root, action.mkdir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HostNotReady(f"cannot {action.description}: {exc}") from exc
        if action.write is not None:
            _write_kernel_file(host_path(fs_root, action.write[0]), action.write[1])
        if action.command:
            run(action.command)


@dataclass
class SetupReport:
    """What `hpctl host setup` did and found."""

    actions: list[Action]
    notes: list[str]
    layout: CgroupLayout
    binaries: HostBinaries | None = None
    smoke_seconds: float | None = None
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """Whether setup changed the host (always False for a dry run)."""
        return bool(self.actions) and not self.dry_run

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "changed": self.changed,
            "dry_run": self.dry_run,
            "actions": [a.to_dict() for a in self.actions],
            "notes": list(self.notes),
            "cgroup": self.layout.to_dict(),
            "binaries": self.binaries.to_dict() if self.binaries else None,
            "smoke_seconds": self.smoke_seconds,
        }


def setup_host(
    engine_root: Path,
    instance: str,
    *,
    dry_run: bool = False,
    packages_only: bool = False,
    smoke: bool = True,
    log: Callable[[str], None] = print,
) -> SetupReport:
    """Provision this host for the engine (idempotent) and check crun works.

    Installs missing packages, fixes the cgroup layout for crun, enables IPv4
    forwarding, creates the engine root, checks crun/conmon/init exist and,
    when root, runs a smoke container. With ``dry_run`` only plans. With
    ``packages_only`` only the apt step runs. Raises HostNotReady when a step
    fails or the host cannot be made ready.
    """
    if packages_only:
        missing = tuple(packages.missing_packages())
        plan = SetupPlan()
        if missing:
            plan.actions.append(
                Action(kind="apt-install", description=f"install {' '.join(missing)}", packages=missing)
            )
        if not dry_run:
            apply_actions(plan.actions, log=log)
        return SetupReport(actions=plan.actions, notes=[], layout=detect_cgroup_layout(), dry_run=dry_run)
    facts = gather_facts(engine_root)
    plan = plan_setup(facts)
    report = SetupReport(actions=plan.actions, notes=plan.notes, layout=facts.layout, dry_run=dry_run)
    if dry_run:
        return report
    apply_actions(plan.actions, log=log)
    if plan.actions:
        report.layout = detect_cgroup_layout()
        leftover = report.layout.controllers_only_on_v2
        if leftover:
            raise HostNotReady(f"controllers still on cgroup v2 after setup: {', '.join(sorted(leftover))}")
    report.binaries = check_binaries()
    if smoke and os.geteuid() == 0:
        report.smoke_seconds = crun_smoke_test(EnginePaths(engine_root), instance, report.layout)
    elif smoke:
        report.notes.append("skipped the crun smoke test: it needs root")
    return report
