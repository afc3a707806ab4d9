"""Purging a tenant from a real engine: everything it held goes, a new tenant of that name starts empty,
and the other tenants keep everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cgroups.layout import detect_cgroup_layout
from engine.cgroups.resources import Resources
from engine.engine import Engine
from engine.errors import ImageNotFound
from engine.images.model import Image
from engine.runtime.model import ContainerSpec
from engine.volumes.spec import MountSpec
from tests.engine.privileged.test_build import build, run_output, write_context

pytestmark = pytest.mark.privileged
MIB = 1024 * 1024
DOCKERFILE = 'FROM busybox\nRUN echo built-by-the-first-acme > /marker\nCMD ["cat", "/marker"]\n'


def _fill(engine: Engine, tenant: str, tmp: Path) -> None:
    """Give ``tenant`` a built image (with build cache), a written volume, a quota and a running container."""
    result, _ = build(
        engine, write_context(tmp / tenant, {"Dockerfile": DOCKERFILE}), f"{tenant}/app:v1", tenant=tenant
    )
    assert result.run_steps == 1
    engine.set_tenant_quota(tenant, Resources(pids=64))
    engine.volume_create(f"{tenant}.data", tenant=tenant, size=16 * MIB)
    data = MountSpec(kind="volume", source=f"{tenant}.data", target="/data")
    writer = engine.run(
        ContainerSpec(
            image=f"{tenant}/app:v1",
            tenant=tenant,
            command=("sh", "-c", "echo s3cret > /data/f"),
            mounts=(data,),
        )
    )
    assert engine.wait(writer.id, timeout=30).exit_code == 0
    engine.run(
        ContainerSpec(
            image=f"{tenant}/app:v1",
            tenant=tenant,
            command=("sleep", "600"),
            mounts=(data,),
            network="bridge",
        )
    )


def _tenant_cgroups(engine: Engine, tenant: str) -> list[str]:
    cgroup = engine.containers.quotas.cgroup(tenant)
    return [d for d in detect_cgroup_layout().cgroup_dirs(cgroup) if Path(d).exists()]


def test_purge_removes_everything_of_the_tenant_and_a_reused_name_starts_empty(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    _fill(engine, "acme", tmp_path)
    _fill(engine, "other", tmp_path)
    old_base = engine.containers.id_ranges.range_for("acme").base
    assert engine.build_cache.entry_count("acme") > 0
    assert _tenant_cgroups(engine, "acme")
    assert list(engine.paths.layers.glob(f"*/{old_base}"))

    report = engine.purge_tenant("acme")

    assert len(report.containers) == 2 and report.volumes == ["acme.data"] and report.networks
    assert report.uid_base == old_base and report.cache_entries > 0 and report.unpacked_layers > 0
    assert [c for c in engine.list(all=True) if c.tenant == "acme"] == []
    assert engine.volume_list("acme") == [] and engine.network_list("acme") == []
    with pytest.raises(ImageNotFound):
        engine.image("acme/app:v1")
    assert engine.build_cache.entry_count("acme") == 0
    assert engine.tenant_quota("acme") == Resources()
    assert _tenant_cgroups(engine, "acme") == []
    assert engine.usage.tenant_usage("acme").samples == 0
    assert list(engine.paths.layers.glob(f"*/{old_base}")) == []
    assert "acme" not in engine.containers.id_ranges.all()

    # the other tenant keeps everything
    assert engine.image("other/app:v1")
    assert [v.name for v in engine.volume_list("other")] == ["other.data"]
    assert len([c for c in engine.list() if c.tenant == "other"]) == 1
    assert engine.build_cache.entry_count("other") > 0
    assert engine.tenant_quota("other") == Resources(pids=64)

    # purging again is harmless (a retried task)
    again = engine.purge_tenant("acme")
    assert again.containers == [] and again.images == [] and again.uid_base is None

    # a new "acme" inherits nothing: no image, no build cache, no volume data, a fresh uid range
    new_base = engine.containers.id_ranges.range_for("acme").base
    assert new_base != old_base
    assert new_base not in {r.base for r in engine.containers.id_ranges.all().values() if r.base != new_base}
    result, _ = build(
        engine, write_context(tmp_path / "new", {"Dockerfile": DOCKERFILE}), "acme/app:v1", tenant="acme"
    )
    assert result.cached_steps == 0 and result.run_steps == 1
    engine.volume_create("acme.data", tenant="acme", size=16 * MIB)
    code, lines = run_output_with_volume(engine, "acme", "acme.data")
    assert code == 0 and lines == ["empty"]
    assert run_output(engine, "busybox", "true")[0] == 0
    engine.purge_tenant("acme")
    engine.purge_tenant("other")
    assert engine.volume_list() == [] and engine.list(all=True) == []


def run_output_with_volume(engine: Engine, tenant: str, volume: str) -> tuple[int | None, list[str]]:
    """List the volume's files from a container of ``tenant`` ("empty" when it has none)."""
    mount = MountSpec(kind="volume", source=volume, target="/data")
    c = engine.run(
        ContainerSpec(
            image="busybox",
            tenant=tenant,
            command=("sh", "-c", "ls -A /data | grep -v lost+found || echo empty"),
            mounts=(mount,),
        )
    )
    done = engine.wait(c.id, timeout=30)
    lines = [line.text for line in engine.logs(c.id)]
    engine.remove(c.id, force=True)
    return done.exit_code, lines


def test_hpctl_tenant_purge(engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    def hpctl(*args: str) -> tuple[int, str, str]:
        code = main(["--root", str(engine.paths.root), "--instance", engine.instance, *args])
        out, err = capsys.readouterr()
        return code, out, err

    engine.volume_create("gone.data", tenant="gone", size=16 * MIB)
    engine.images.tag("busybox:latest", "gone/app:v1")
    engine.run(ContainerSpec(image="gone/app:v1", tenant="gone", command=("sleep", "600")))
    code, _out, err = hpctl("tenant", "purge", "gone")
    assert code == 2 and "--yes" in err and engine.volume_list("gone")  # nothing done without --yes
    code, out, _err = hpctl("tenant", "purge", "gone", "--yes")
    assert code == 0 and "purged tenant gone" in out and "gone.data" in out
    assert engine.volume_list("gone") == [] and engine.list(all=True) == []
    with pytest.raises(ImageNotFound):
        engine.image("gone/app:v1")
    code, _out, err = hpctl("tenant", "purge", "Bad/Name", "--yes")
    assert code != 0 and "invalid tenant name" in err
