"""Item 8: a container filling `/` hits its tenant's disk, not the host's; the disk leaves nothing behind."""

from __future__ import annotations

import json
import subprocess

import pytest

from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec, NotFound
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec
from engine.volumes.disk import loop_devices_backed_by
from tests.engine.conftest import leaks
from tests.engine.privileged.test_quotas_limits import hpctl

pytestmark = pytest.mark.privileged

MiB = 1024**2
FILL = "dd if=/dev/zero of=/fill bs=1M count=400; echo dd-exit=$?"


def output(engine: Engine, cid: str) -> list[str]:
    engine.wait(cid, timeout=60)
    return [line.text for line in engine.logs(cid)]


def test_two_containers_filling_root_share_the_tenants_disk_and_stop_at_its_size(
    engine: Engine, busybox: Image
) -> None:
    engine.set_tenant_storage("acme", 128 * MiB)
    first = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", FILL), tenant="acme"))
    assert "dd-exit=1" in output(engine, first.id)  # ENOSPC well before 400 MiB
    second = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", FILL), tenant="acme"))
    lines = output(engine, second.id)
    assert "dd-exit=1" in lines and any("No space left on device" in line for line in lines)
    disk = engine.tenant_storage("acme")
    assert disk.mounted and disk.used <= 128 * MiB
    # the writes are on the tenant's disk, not in the engine root's own file system
    upper = engine.containers.store.directory(first.id) / "upper"
    assert upper.is_symlink() and upper.resolve().is_relative_to(
        engine.containers.tenant_disks.mount_point("acme")
    )
    # a tenant without a disk is not affected by acme's being full
    other = engine.run(
        ContainerSpec(image="busybox", command=("sh", "-c", "echo ok > /f && cat /f"), tenant="other")
    )
    assert output(engine, other.id) == ["ok"]
    for c in (first, second, other):
        engine.remove(c.id, force=True)
    assert not engine.tenant_storage("acme").mounted  # unmounted with the tenant's last container
    assert not leaks(engine.paths.root, engine.instance)


def test_a_restarted_container_keeps_its_files_and_exec_writes_count_too(
    engine: Engine, busybox: Image
) -> None:
    engine.set_tenant_storage("acme", 96 * MiB)
    c = engine.run(
        ContainerSpec(image="busybox", command=("sh", "-c", "echo kept > /k; sleep 120"), tenant="acme")
    )
    proc = engine.exec(
        c.id,
        ExecSpec(command=("sh", "-c", "dd if=/dev/zero of=/x bs=1M count=300 2>&1; echo exit=$?")),
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=60)
    assert "No space left on device" in out.decode()
    engine.stop(c.id, timeout=0)
    engine.start(c.id)
    code = engine.exec(c.id, ExecSpec(command=("cat", "/k")), stdout=subprocess.PIPE)
    assert code.communicate(timeout=30)[0] == b"kept\n"
    with pytest.raises(Conflict, match="still has containers"):
        engine.remove_tenant_storage("acme")
    engine.remove(c.id, force=True)
    engine.remove_tenant_storage("acme")
    with pytest.raises(NotFound):
        engine.tenant_storage("acme")
    assert not loop_devices_backed_by(engine.paths.root, settle=2.0)
    assert not leaks(engine.paths.root, engine.instance)


def test_disk_sizes_grow_never_shrink_and_bad_input_changes_nothing(engine: Engine, busybox: Image) -> None:
    with pytest.raises(InvalidSpec, match="at least 67108864 bytes"):
        engine.set_tenant_storage("acme", MiB)
    with pytest.raises(NotFound):
        engine.tenant_storage("acme")
    engine.set_tenant_storage("acme", 64 * MiB)
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "120"), tenant="acme"))
    # a disk in use grows once the tenant's containers are gone (no online resize without
    # CAP_SYS_RESOURCE); the new size holds from the next container on
    assert engine.set_tenant_storage("acme", 128 * MiB).size == 128 * MiB
    engine.remove(c.id, force=True)
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "120"), tenant="acme"))
    proc = engine.exec(
        c.id,
        ExecSpec(command=("sh", "-c", "dd if=/dev/zero of=/x bs=1M count=90 && echo fits")),
        stdout=subprocess.PIPE,
    )
    assert b"fits" in proc.communicate(timeout=60)[0]
    with pytest.raises(InvalidSpec, match="cannot shrink"):
        engine.set_tenant_storage("acme", 64 * MiB)
    assert engine.tenant_storage("acme").size == 128 * MiB
    engine.remove(c.id, force=True)
    code, out, err = hpctl(engine, "tenant", "storage", "set", "acme", "256m", "--json")  # offline grow
    assert code == 0, err
    assert json.loads(out)["size"] == 256 * MiB
    code, _out, err = hpctl(engine, "tenant", "storage", "set", "acme", "lots")
    assert code != 0 and "invalid size 'lots'" in err
    code, out, err = hpctl(engine, "tenant", "storage", "rm", "acme")
    assert code == 0, err
    code, _out, err = hpctl(engine, "tenant", "storage", "show", "acme")
    assert code != 0 and "has no root file system disk" in err
    assert not leaks(engine.paths.root, engine.instance)
