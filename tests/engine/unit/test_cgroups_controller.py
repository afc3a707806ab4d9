"""cgroup v1 and v2 translation, tenant quotas and usage sampling on fake cgroup trees (no root)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from engine.cgroups.controller import (
    CgroupStats,
    V1Driver,
    V2Driver,
    cgroup_driver,
    shares_to_weight,
)
from engine.cgroups.layout import CgroupLayout
from engine.cgroups.resources import DeviceThrottle, HostCapacity, Resources
from engine.cgroups.tenants import TenantQuotas
from engine.cgroups.usage import UsageMeter, cpu_percent, disk_usage
from engine.errors import InvalidSpec, QuotaExceeded
from engine.paths import EnginePaths
from engine.runtime.model import Container

MiB = 1024**2
CG = PurePosixPath("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")


def v1_layout() -> CgroupLayout:
    return CgroupLayout(
        version=1,
        hybrid=True,
        v1_mounts={c: CG / c for c in V1_CONTROLLERS},
        v2_mount=CG / "unified",
    )


def v2_layout() -> CgroupLayout:
    return CgroupLayout(version=2, hybrid=False, v2_mount=CG)


class Recording:
    """Mixin that records every cgroup write (and performs it on the fake tree)."""

    log: list[tuple[str, str]]

    def write_file(self, path: Path, value: str) -> None:
        self.log.append((str(path), value))
        with open(path, "a" if path.name == "cgroup.subtree_control" else "w") as f:
            f.write(value + ("\n" if path.name == "cgroup.subtree_control" else ""))


class RecordingV1(Recording, V1Driver):
    pass


class RecordingV2(Recording, V2Driver):
    pass


def v1(tmp_path: Path) -> RecordingV1:
    d = RecordingV1(v1_layout(), tmp_path)
    d.log = []
    for c in V1_CONTROLLERS:
        (tmp_path / "sys/fs/cgroup" / c).mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified").mkdir()
    return d


def v2(tmp_path: Path) -> RecordingV2:
    d = RecordingV2(v2_layout(), tmp_path)
    d.log = []
    root = tmp_path / "sys/fs/cgroup"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    (root / "cgroup.subtree_control").write_text("")
    return d


FULL = Resources(
    memory=256 * MiB,
    memory_reservation=128 * MiB,
    cpu_quota=50_000,
    cpu_shares=512,
    pids=100,
    devices=(DeviceThrottle("read_bps", 254, 0, MiB), DeviceThrottle("write_iops", 254, 0, 100)),
)


def test_driver_follows_the_layout() -> None:
    assert isinstance(cgroup_driver(v1_layout()), V1Driver)
    assert isinstance(cgroup_driver(v2_layout()), V2Driver)


def test_shares_to_weight_matches_crun() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262_144) == 10_000
    assert shares_to_weight(1) == 1  # clamped


def test_v1_translation() -> None:
    writes = V1Driver(v1_layout()).writes(FULL)
    assert writes[:7] == [
        ("memory", "memory.limit_in_bytes", str(256 * MiB)),
        ("memory", "memory.memsw.limit_in_bytes", str(256 * MiB)),
        ("memory", "memory.soft_limit_in_bytes", str(128 * MiB)),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.shares", "512"),
        ("pids", "pids.max", "100"),
    ]
    assert ("blkio", "blkio.throttle.read_bps_device", f"254:0 {MiB}") in writes
    assert ("blkio", "blkio.throttle.write_iops_device", "254:0 100") in writes
    assert ("blkio", "blkio.throttle.write_bps_device", "254:0 0") in writes  # not throttled


def test_v1_unlimited_and_removed_throttles() -> None:
    writes = V1Driver(v1_layout()).writes(Resources(), current_devices=["8:0"])
    assert ("memory", "memory.limit_in_bytes", "-1") in writes
    assert ("cpu", "cpu.cfs_quota_us", "-1") in writes
    assert ("cpu", "cpu.shares", "1024") in writes
    assert ("pids", "pids.max", "max") in writes
    assert [w for w in writes if w[0] == "blkio"] == [
        ("blkio", f"blkio.throttle.{k}_device", "8:0 0")
        for k in ("read_bps", "write_bps", "read_iops", "write_iops")
    ]


def test_v2_translation() -> None:
    writes = V2Driver(v2_layout()).writes(FULL, current_devices=["8:0"])
    assert writes == [
        ("memory", "memory.max", str(256 * MiB)),
        ("memory", "memory.swap.max", "0"),
        ("memory", "memory.low", str(128 * MiB)),
        ("cpu", "cpu.max", "50000 100000"),
        ("cpu", "cpu.weight", "20"),
        ("pids", "pids.max", "100"),
        ("io", "io.max", "254:0 rbps=1048576 wbps=max riops=max wiops=100"),
        ("io", "io.max", "8:0 rbps=max wbps=max riops=max wiops=max"),
    ]
    unlimited = V2Driver(v2_layout()).writes(Resources())
    assert unlimited == [
        ("memory", "memory.max", "max"),
        ("memory", "memory.swap.max", "max"),
        ("memory", "memory.low", "0"),
        ("cpu", "cpu.max", "max 100000"),
        ("cpu", "cpu.weight", "100"),
        ("pids", "pids.max", "max"),
    ]


def test_v1_ensure_and_apply_on_a_fake_tree(tmp_path: Path) -> None:
    d = v1(tmp_path)
    made = d.ensure("/inst/tenants/acme")
    assert tmp_path / "sys/fs/cgroup/memory/inst/tenants/acme" in made
    assert (tmp_path / "sys/fs/cgroup/unified/inst/tenants/acme").is_dir()
    mem = tmp_path / "sys/fs/cgroup/memory/inst/tenants/acme"
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    d.apply("/inst/tenants/acme", Resources(memory=64 * MiB, pids=10, cpu_quota=100_000))
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert not (mem / "memory.memsw.limit_in_bytes").exists()  # no swap accounting: skipped
    assert (tmp_path / "sys/fs/cgroup/pids/inst/tenants/acme/pids.max").read_text() == "10"
    assert (tmp_path / "sys/fs/cgroup/cpu/inst/tenants/acme/cpu.cfs_quota_us").read_text() == "100000"
    assert d.exists("/inst/tenants/acme")
    with pytest.raises(InvalidSpec, match="absolute"):
        d.ensure("inst/../../etc")


def test_v1_memsw_order_keeps_memsw_above_the_limit(tmp_path: Path) -> None:
    d = v1(tmp_path)
    d.ensure("/i/t")
    mem = tmp_path / "sys/fs/cgroup/memory/i/t"
    (mem / "memory.limit_in_bytes").write_text(str(128 * MiB))
    names = [n for _c, n, _v in d._ordered("/i/t", d.writes(Resources(memory=64 * MiB)))]
    assert names.index("memory.limit_in_bytes") < names.index("memory.memsw.limit_in_bytes")  # lowering
    names = [n for _c, n, _v in d._ordered("/i/t", d.writes(Resources(memory=256 * MiB)))]
    assert names.index("memory.memsw.limit_in_bytes") < names.index("memory.limit_in_bytes")  # raising


def test_v2_ensure_enables_controllers_at_every_level(tmp_path: Path) -> None:
    d = v2(tmp_path)
    root = tmp_path / "sys/fs/cgroup"
    # the levels exist already and offer every controller (the kernel fills cgroup.controllers)
    for level in ("inst", "inst/tenants", "inst/tenants/acme"):
        (root / level).mkdir(parents=True)
        (root / level / "cgroup.controllers").write_text("cpu io memory pids\n")
    d.ensure("/inst/tenants/acme")
    for level in ("", "inst", "inst/tenants", "inst/tenants/acme"):
        enabled = (root / level / "cgroup.subtree_control").read_text().split()
        assert sorted(enabled) == ["+cpu", "+io", "+memory", "+pids"], level
    # controllers already enabled are not written again; absent ones are never asked for
    (root / "cgroup.subtree_control").write_text("cpu io memory pids\n")
    for level in ("inst", "inst/tenants", "inst/tenants/acme"):
        (root / level / "cgroup.subtree_control").write_text("cpu memory pids\n")
        (root / level / "cgroup.controllers").write_text("cpu memory pids\n")
    d.log.clear()
    d.ensure("/inst/tenants/acme")
    assert d.log == []


def test_v1_stats(tmp_path: Path) -> None:
    d = v1(tmp_path)
    d.ensure("/i/t/c")
    base = tmp_path / "sys/fs/cgroup"
    (base / "cpuacct/i/t/c/cpuacct.usage").write_text("2500000000\n")
    (base / "memory/i/t/c/memory.usage_in_bytes").write_text(f"{50 * MiB}\n")
    (base / "memory/i/t/c/memory.stat").write_text(f"cache 1\ntotal_inactive_file {10 * MiB}\n")
    (base / "memory/i/t/c/memory.limit_in_bytes").write_text("9223372036854771712\n")
    (base / "memory/i/t/c/memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (base / "pids/i/t/c/pids.current").write_text("7\n")
    (base / "pids/i/t/c/pids.max").write_text("max\n")
    (base / "blkio/i/t/c/blkio.throttle.io_service_bytes_recursive").write_text(
        "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Total 12288\nTotal 12288\n"
    )
    assert d.stats("/i/t/c") == CgroupStats(
        cpu_usage_ns=2_500_000_000,
        memory_usage=40 * MiB,
        memory_limit=None,
        pids=7,
        pids_limit=None,
        io_read_bytes=4096,
        io_write_bytes=8192,
        oom_kills=2,
    )
    assert d.oom_kills("/i/t/c") == 2
    assert d.stats("/i/t/gone") is None
    assert d.oom_kills("/i/t/gone") is None


def test_v2_stats(tmp_path: Path) -> None:
    d = v2(tmp_path)
    c = tmp_path / "sys/fs/cgroup/i/t/c"
    c.mkdir(parents=True)
    (c / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    (c / "memory.current").write_text(f"{30 * MiB}\n")
    (c / "memory.stat").write_text(f"anon 1\ninactive_file {MiB}\n")
    (c / "memory.max").write_text(f"{64 * MiB}\n")
    (c / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (c / "pids.current").write_text("3\n")
    (c / "pids.max").write_text("50\n")
    (c / "io.stat").write_text("254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n")
    assert d.stats("/i/t/c") == CgroupStats(1_500_000_000, 29 * MiB, 64 * MiB, 3, 50, 100, 200, 1)


def test_cpu_percent() -> None:
    a, b = CgroupStats(cpu_usage_ns=0), CgroupStats(cpu_usage_ns=500_000_000)
    assert cpu_percent(a, b, 1.0) == pytest.approx(50.0)
    assert cpu_percent(b, a, 1.0) == 0.0  # counter restarted
    assert cpu_percent(a, b, 0) == 0.0


# ---- tenant quotas ----------------------------------------------------------------------------


def quotas(tmp_path: Path) -> tuple[TenantQuotas, RecordingV1]:
    d = v1(tmp_path)
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    roots = [tmp_path / "sys/fs/cgroup" / c for c in (*V1_CONTROLLERS, "unified")]
    q = TenantQuotas(
        paths, "inst", lambda: d, lambda: roots, lambda: HostCapacity(cpus=2, memory=8 * 1024**3)
    )
    return q, d


def test_quota_is_stored_and_applied_only_to_an_existing_cgroup(tmp_path: Path) -> None:
    q, d = quotas(tmp_path)
    q.set("acme", Resources(memory=256 * MiB, pids=500))
    assert d.log == []  # no containers, no cgroup: stored only
    assert q.get("acme") == Resources(memory=256 * MiB, pids=500)
    assert q.all() == {"acme": Resources(memory=256 * MiB, pids=500)}
    assert q.get("other").is_unlimited
    with q.ready("acme") as cgroup:
        assert cgroup == "/inst/tenants/acme"
        pids = tmp_path / "sys/fs/cgroup/pids/inst/tenants/acme/pids.max"
        assert pids.read_text() == "500"
        (tmp_path / "sys/fs/cgroup/memory/inst/tenants/acme/c1").mkdir()  # "crun" made a container
    q.set("acme", Resources(pids=42))
    assert pids.read_text() == "42"
    (tmp_path / "sys/fs/cgroup/memory/inst/tenants/acme/c1").rmdir()
    # a real cgroup directory can be removed with its control files in it; a fake one cannot
    for f in (tmp_path / "sys/fs/cgroup").rglob("*"):
        if f.is_file():
            f.unlink()
    q.release("acme", "/inst/tenants/acme/c1")
    assert not (tmp_path / "sys/fs/cgroup/memory/inst").exists()
    q.set("acme", Resources())
    assert not (q.directory / "acme.json").exists()


def test_ready_removes_what_it_made_when_creation_fails(tmp_path: Path) -> None:
    q, _d = quotas(tmp_path)
    with pytest.raises(RuntimeError), q.ready("acme"):
        raise RuntimeError("crun failed")
    assert not (tmp_path / "sys/fs/cgroup/memory/inst").exists()


def test_bad_quota_changes_nothing(tmp_path: Path) -> None:
    q, d = quotas(tmp_path)
    q.set("acme", Resources(memory=256 * MiB))
    with pytest.raises(InvalidSpec, match="too small"):
        q.set("acme", Resources(memory=MiB))
    with pytest.raises(QuotaExceeded, match="2 CPUs"):
        q.set("acme", Resources(cpu_quota=500_000))
    with pytest.raises(InvalidSpec, match="tenant name"):
        q.set("../x", Resources(memory=256 * MiB))
    assert q.get("acme") == Resources(memory=256 * MiB)
    with pytest.raises(QuotaExceeded, match="acme's quota"):
        q.check_container("acme", Resources(memory=512 * MiB))
    assert d.log == []


# ---- usage sampling ---------------------------------------------------------------------------


class FakeDriver(V1Driver):
    def __init__(self) -> None:
        super().__init__(v1_layout())
        self.readings: dict[str, CgroupStats] = {}

    def stats(self, cgroup: str) -> CgroupStats | None:
        return self.readings.get(cgroup)


def test_usage_accumulates_cpu_and_memory_seconds(tmp_path: Path) -> None:
    paths = EnginePaths(tmp_path)
    paths.ensure()
    now = [1000.0]
    driver = FakeDriver()
    meter = UsageMeter(paths, lambda: driver, clock=lambda: now[0])
    c = Container(
        id="c" * 64,
        name="web",
        tenant="acme",
        image="i",
        image_id="d",
        command=[],
        status="running",
        created="",
        cgroup_path="/i/tenants/acme/cc",
    )
    (paths.containers / c.id / "upper").mkdir(parents=True)
    (paths.containers / c.id / "upper" / "data").write_bytes(b"x" * 10000)
    driver.readings[c.cgroup_path] = CgroupStats(cpu_usage_ns=2_000_000_000, memory_usage=100 * MiB, pids=3)
    assert meter.sample([c]) == 1
    now[0] += 10
    driver.readings[c.cgroup_path] = CgroupStats(cpu_usage_ns=5_000_000_000, memory_usage=100 * MiB, pids=4)
    meter.sample([c])
    u = meter.container_usage(c.id)
    assert u.cpu_seconds == pytest.approx(5.0)
    assert u.memory_byte_seconds == pytest.approx(100 * MiB * 10)
    assert (u.pids, u.samples) == (4, 2)
    assert u.disk_bytes >= 10000
    # a restart resets the cgroup counter: the new run's time is added, not subtracted
    now[0] += 10
    driver.readings[c.cgroup_path] = CgroupStats(cpu_usage_ns=1_000_000_000, memory_usage=0, pids=1)
    meter.sample([c])
    assert meter.container_usage(c.id).cpu_seconds == pytest.approx(6.0)
    t = meter.tenant_usage("acme")
    assert t.cpu_seconds == pytest.approx(6.0)
    assert t.memory_byte_seconds == pytest.approx(100 * MiB * 10 + 50 * MiB * 10)
    assert t.containers == [c.id]
    # the container is gone: the tenant keeps its totals, live values drop to zero
    meter.sample([])
    t = meter.tenant_usage("acme")
    assert t.cpu_seconds == pytest.approx(6.0)
    assert (t.pids, t.memory_bytes, t.containers) == (0, 0, [])


def test_disk_usage_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 8192)
    (tmp_path / "b").hardlink_to(tmp_path / "a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link").symlink_to("/etc/passwd")
    once = disk_usage(tmp_path)
    assert 8192 <= once < 2 * 8192 + 8192
    assert disk_usage(tmp_path / "missing") == 0


def test_final_sample_bills_a_short_lived_container_without_touching_live_totals(tmp_path: Path) -> None:
    paths = EnginePaths(tmp_path)
    paths.ensure()
    driver = FakeDriver()
    meter = UsageMeter(paths, lambda: driver, clock=lambda: 50.0)
    c = Container(
        id="d" * 64,
        name="job",
        tenant="acme",
        image="i",
        image_id="d",
        command=[],
        status="exited",
        created="",
        cgroup_path="/i/tenants/acme/dd",
    )
    (paths.containers / c.id).mkdir(parents=True)
    driver.readings[c.cgroup_path] = CgroupStats(cpu_usage_ns=300_000_000, memory_usage=MiB, pids=0)
    assert meter.sample([c], final=True) == 1
    t = meter.tenant_usage("acme")
    assert t.cpu_seconds == pytest.approx(0.3)
    assert (t.samples, t.containers) == (0, [])
    # sampling again adds nothing: the counter did not move
    meter.sample([c], final=True)
    assert meter.tenant_usage("acme").cpu_seconds == pytest.approx(0.3)
