"""An engine that requires tenant limits: nothing of a tenant runs above a tenant cgroup without its quota."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.build.model import BuildFailed, BuildOptions
from engine.cgroups.controller import CgroupStats, host_driver
from engine.cgroups.resources import Resources
from engine.engine import Engine
from engine.errors import LimitsNotSet, QuotaExceeded
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec
from tests.engine.conftest import leaks

pytestmark = pytest.mark.privileged

MiB = 1024**2
QUOTA = Resources(memory=256 * MiB, pids=64, cpu_quota=50_000)


def tenant_limits(engine: Engine, tenant: str) -> tuple[int | None, int | None]:
    stats = host_driver().stats(engine.containers.quotas.cgroup(tenant)) or CgroupStats()
    return stats.memory_limit, stats.pids_limit


def test_a_tenant_without_quota_runs_nothing_and_leaves_nothing(engine: Engine, busybox: Image) -> None:
    engine.require_tenant_limits()
    with pytest.raises(LimitsNotSet, match="tenant nolimits has no resource quota on this host"):
        engine.run(ContainerSpec(image="busybox", command=("true",), tenant="nolimits"))
    assert engine.list(all=True) == []
    assert not host_driver().exists(engine.containers.quotas.cgroup("nolimits"))
    assert not leaks(engine.paths.root, engine.instance)


def test_the_quota_is_written_again_before_every_start_and_exec(engine: Engine, busybox: Image) -> None:
    engine.require_tenant_limits()
    engine.set_tenant_quota("acme", QUOTA)
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "120"), tenant="acme"))
    assert tenant_limits(engine, "acme") == (256 * MiB, 64)
    tenant_cgroup = engine.containers.quotas.cgroup("acme")
    driver = host_driver()
    # whatever lifted the tenant cgroup's limits meanwhile, an exec puts the quota back first
    driver.apply(tenant_cgroup, Resources())
    assert tenant_limits(engine, "acme")[1] is None
    proc = engine.exec(c.id, ExecSpec(command=("true",)), stdout=subprocess.DEVNULL)
    assert proc.wait(timeout=30) == 0
    assert tenant_limits(engine, "acme") == (256 * MiB, 64)
    # ... and so does a start
    engine.stop(c.id, timeout=0)
    driver.apply(tenant_cgroup, Resources())
    engine.start(c.id)
    assert tenant_limits(engine, "acme") == (256 * MiB, 64)
    engine.remove(c.id, force=True)


def test_a_build_of_a_tenant_without_quota_is_refused(engine: Engine, busybox: Image, tmp_path: Path) -> None:
    engine.require_tenant_limits()
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo hi\n")
    with pytest.raises(
        BuildFailed, match="line 2: RUN could not start: tenant nolimits has no resource quota"
    ):
        engine.build(BuildOptions(context=tmp_path, tag="nolimits/app:1", tenant="nolimits"))
    assert engine.list(all=True) == []
    assert not host_driver().exists(engine.containers.quotas.cgroup("nolimits"))


def test_a_build_run_gets_its_own_limits_below_the_tenant_quota(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    engine.require_tenant_limits()
    engine.set_tenant_quota("acme", Resources(pids=500))
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN for i in $(seq 30); do sleep 5 & done; wait\n")
    # the tenant could run 500 processes; this build's RUN limit is 8
    with pytest.raises(QuotaExceeded, match=r"line 2: RUN failed .*process limit \(8: "):
        engine.build(
            BuildOptions(context=tmp_path, tag="acme/app:1", tenant="acme", run_limits=Resources(pids=8))
        )
    assert engine.list(all=True) == []
