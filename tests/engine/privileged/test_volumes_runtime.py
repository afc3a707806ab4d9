"""Volumes with real containers: size limits, persistence, ownership, sharing, tmpfs, binds, leaks."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec, QuotaExceeded, RuntimeFailure, UnsafeArchive, VolumeNotFound
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec
from engine.volumes import disk
from engine.volumes.spec import MountSpec

pytestmark = pytest.mark.privileged
MIB = 1024 * 1024


def vol(name: str, target: str = "/data", *, ro: bool = False) -> MountSpec:
    return MountSpec(kind="volume", source=name, target=target, read_only=ro)


def run(
    engine: Engine, script: str, *mounts: MountSpec, remove: bool = True, **kw: object
) -> tuple[int, str]:
    """Run ``sh -c script`` in busybox with ``mounts``; return (exit code, stdout+stderr)."""
    spec = ContainerSpec(image="busybox", command=("sh", "-c", script), mounts=mounts, **kw)  # type: ignore[arg-type]
    c = engine.run(spec)
    final = engine.wait(c.id, timeout=60)
    text = "".join(line.text + "\n" for line in engine.logs(c.id))
    if remove:
        engine.remove(c.id)
    assert final.exit_code is not None
    return final.exit_code, text


def nothing_left(engine: Engine) -> None:
    """No loop device, volume mount or half-made volume below the engine root."""
    assert disk.loop_devices_backed_by(engine.paths.root, settle=2) == []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        assert [ln for ln in f if str(engine.paths.volumes) in ln] == []
    assert [p.name for p in engine.paths.volumes.iterdir() if p.name.startswith(".")] == []
    locks = engine.paths.run / "locks"
    existing = {f"volume.{v.name}" for v in engine.volume_list()}
    if locks.exists():
        assert [
            p.name for p in locks.iterdir() if p.name.startswith("volume.") and p.name not in existing
        ] == []


def test_write_past_the_size_fails_with_enospc_and_spares_other_volumes(
    engine: Engine, busybox: Image
) -> None:
    engine.volume_create("small", size=16 * MIB)
    engine.volume_create("other", size=16 * MIB)
    code, _ = run(
        engine,
        "dd if=/dev/urandom of=/o/keep bs=1024 count=512 && md5sum /o/keep > /o/sum",
        vol("other", "/o"),
    )
    assert code == 0
    code, out = run(
        engine,
        "dd if=/dev/zero of=/s/big bs=1M count=64; echo rc=$?; md5sum -c /o/sum",
        vol("small", "/s"),
        vol("other", "/o"),
    )
    assert "No space left on device" in out
    assert "rc=1" in out
    assert "/o/keep: OK" in out
    small = engine.volumes.usage("small")
    assert 10 * MIB < small.used <= 16 * MIB
    assert engine.volumes.usage("other").used < 2 * MIB
    nothing_left(engine)


@pytest.mark.parametrize("size", [32 * MIB, None], ids=["ext4-loop", "dir"])
def test_data_survives_rm_restart_and_export_import(
    engine: Engine, busybox: Image, tmp_path: Path, size: int | None
) -> None:
    engine.volume_create("keep", size=size)
    code, _ = run(
        engine,
        "mkdir -p /data/sub && echo precious > /data/sub/file && ln -s sub/file /data/link",
        vol("keep"),
    )
    assert code == 0
    # container removed: the data stays
    assert run(engine, "cat /data/sub/file", vol("keep"))[1] == "precious\n"
    # a new Engine object on the same root (engine/agent restart)
    again = Engine(root=engine.paths.root, instance=engine.instance)
    assert again.volume("keep").size == (size or 0)
    assert run(again, "cat /data/link", vol("keep"))[1] == "precious\n"
    # export, import into a new volume, read it there
    archive = tmp_path / "keep.tar"
    with open(archive, "wb") as f:
        again.volume_export("keep", f)
    with open(archive, "rb") as f:
        again.volume_import("copy", f, size=size)
    assert run(again, "cat /data/sub/file; stat -c %u:%g /data/sub/file", vol("copy"))[1] == "precious\n0:0\n"
    nothing_left(engine)


def test_volume_files_belong_to_the_tenants_uid_range(engine: Engine, busybox: Image) -> None:
    engine.volume_create("owned", tenant="acme", size=16 * MIB)
    c = engine.run(
        ContainerSpec(
            image="busybox",
            tenant="acme",
            command=("sh", "-c", "echo a > /data/root-file && mkdir /data/d && chown 1000:1001 /data/d"),
            mounts=(vol("owned"),),
        )
    )
    assert engine.wait(c.id, timeout=30).exit_code == 0
    base = engine.volume("owned").uid_base
    assert base == c.uid_base and base >= 100000
    data = engine.volumes.data_dir("owned")
    assert disk.is_mountpoint(data)  # mounted while a container uses it
    assert (os.stat(data).st_uid, os.stat(data).st_gid) == (base, base)
    st = os.stat(data / "root-file")
    assert (st.st_uid, st.st_gid) == (base, base)
    st = os.stat(data / "d")
    assert (st.st_uid, st.st_gid) == (base + 1000, base + 1001)
    engine.remove(c.id)
    assert not disk.is_mountpoint(data)  # unmounted with its last user
    nothing_left(engine)


def test_two_containers_share_one_volume_at_once(engine: Engine, busybox: Image) -> None:
    engine.volume_create("shared", size=16 * MIB)
    a = engine.run(ContainerSpec(image="busybox", command=("sleep", "60"), mounts=(vol("shared", "/a"),)))
    b = engine.run(ContainerSpec(image="busybox", command=("sleep", "60"), mounts=(vol("shared", "/b"),)))
    proc = engine.exec(a.id, ExecSpec(command=("sh", "-c", "echo from-a > /a/msg")))
    assert proc.wait() == 0
    import subprocess

    proc = engine.exec(b.id, ExecSpec(command=("cat", "/b/msg")), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=10)
    assert out == b"from-a\n"
    assert sorted(engine.volumes.users("shared")) == sorted([a.id, b.id])
    engine.remove(a.id, force=True)
    assert disk.is_mountpoint(engine.volumes.data_dir("shared"))  # b still uses it
    engine.remove(b.id, force=True)
    assert not disk.is_mountpoint(engine.volumes.data_dir("shared"))
    nothing_left(engine)


def test_removing_a_volume_in_use_needs_force(engine: Engine, busybox: Image) -> None:
    engine.volume_create("busy", size=8 * MIB)
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "60"), mounts=(vol("busy"),)))
    with pytest.raises(Conflict, match="in use"):
        engine.volume_remove("busy")
    assert engine.volume("busy")
    assert engine.volume_prune() == []  # in use: not pruned
    engine.volume_remove("busy", force=True)
    with pytest.raises(VolumeNotFound):
        engine.volume("busy")
    engine.remove(c.id, force=True)
    # starting again a container whose volume was removed fails clearly
    c = engine.run(ContainerSpec(image="busybox", command=("true",), mounts=(vol("gone"),)))
    engine.wait(c.id, timeout=30)
    engine.volume_remove("gone", force=True)
    with pytest.raises(VolumeNotFound, match="was removed"):
        engine.start(c.id)
    # nor does it pick up a new volume of the same name (another tenant's, here)
    engine.volume_create("gone", tenant="someone-else", size=8 * MIB)
    with pytest.raises(VolumeNotFound, match="was removed"):
        engine.start(c.id)
    assert not disk.is_mountpoint(engine.volumes.data_dir("gone"))
    engine.remove(c.id)
    nothing_left(engine)


def test_another_tenant_cannot_mount_a_volume(engine: Engine, busybox: Image) -> None:
    engine.volume_create("private", tenant="alpha", size=8 * MIB)
    with pytest.raises(Conflict, match="another tenant"):
        engine.run(ContainerSpec(image="busybox", tenant="beta", command=("true",), mounts=(vol("private"),)))
    assert engine.list(all=True) == []
    assert engine.volumes.users("private") == []
    assert run(engine, "true", vol("private"), tenant="alpha")[0] == 0
    nothing_left(engine)


def test_volume_is_created_on_first_use_for_the_containers_tenant(engine: Engine, busybox: Image) -> None:
    assert run(engine, "echo hi > /data/x", vol("fresh"), tenant="gamma")[0] == 0
    v = engine.volume("fresh")
    assert (v.tenant, v.size, v.driver) == ("gamma", 0, "dir")
    assert run(engine, "cat /data/x", vol("fresh"), tenant="gamma")[1] == "hi\n"


def test_read_only_volume_is_not_writable(engine: Engine, busybox: Image) -> None:
    engine.volume_create("ro", size=8 * MIB)
    run(engine, "echo x > /data/f", vol("ro"))
    code, out = run(engine, "cat /data/f; echo y > /data/f", vol("ro", ro=True))
    assert code != 0
    assert out.startswith("x\n") and "Read-only file system" in out


def test_tmpfs_size_and_mode_are_enforced(engine: Engine, busybox: Image) -> None:
    tmpfs = MountSpec(kind="tmpfs", target="/scratch", size=2 * MIB)
    _code, out = run(
        engine, "stat -c %a /scratch; dd if=/dev/zero of=/scratch/f bs=1M count=8; echo rc=$?", tmpfs
    )
    assert out.startswith("1777\n")
    assert "No space left on device" in out and "rc=1" in out
    tmpfs = MountSpec(kind="tmpfs", target="/run/x", size=MIB, mode=0o700)
    assert run(engine, "stat -c %a /run/x", tmpfs)[1] == "700\n"


def test_bind_mount_of_a_host_path_for_operators(engine: Engine, busybox: Image, tmp_path: Path) -> None:
    (tmp_path / "hello").write_text("host says hi\n")
    tmp_path.chmod(0o755)  # host files keep their host owner: the container sees "other" permissions
    (tmp_path / "hello").chmod(0o644)
    bind = MountSpec(kind="bind", source=str(tmp_path), target="/host", read_only=True)
    _code, out = run(engine, "cat /host/hello; touch /host/new", bind, allow_privileged=True)
    assert out.startswith("host says hi\n") and "Read-only file system" in out
    with pytest.raises(InvalidSpec, match="operator"):
        engine.run(ContainerSpec(image="busybox", command=("true",), mounts=(bind,)))


def test_mount_on_use_after_the_loop_mount_is_gone(engine: Engine, busybox: Image) -> None:
    """A host reboot drops every loop mount; starting the container mounts the volume again."""
    engine.volume_create("boot", size=16 * MIB)
    c = engine.run(
        ContainerSpec(
            image="busybox",
            command=("sh", "-c", "echo $RANDOM >> /data/log; cat /data/log"),
            mounts=(vol("boot"),),
        )
    )
    engine.wait(c.id, timeout=30)
    disk.unmount(engine.volumes.data_dir("boot"))  # what a reboot does
    assert not disk.is_mountpoint(engine.volumes.data_dir("boot"))
    engine.start(c.id)
    engine.wait(c.id, timeout=30)
    lines = [ln.text for ln in engine.logs(c.id)]
    assert len(lines) == 1 + 2  # first run printed one line, second run two
    engine.remove(c.id)
    nothing_left(engine)


def test_usage_is_reported_per_volume_and_per_tenant(engine: Engine, busybox: Image) -> None:
    engine.volume_create("u1", tenant="billing", size=32 * MIB)
    engine.volume_create("u2", tenant="billing")
    code, out = run(
        engine,
        "dd if=/dev/urandom of=/a/f bs=1M count=5 && dd if=/dev/urandom of=/b/f bs=1M count=3",
        vol("u1", "/a"),
        vol("u2", "/b"),
        tenant="billing",
    )
    assert code == 0, out
    u1 = engine.volumes.usage("u1")  # not mounted now: read from the superblock
    assert not u1.mounted
    assert 5 * MIB <= u1.used < 6 * MIB and u1.allocated >= 5 * MIB and u1.size == 32 * MIB
    u2 = engine.volumes.usage("u2")
    assert 3 * MIB <= u2.used < 4 * MIB
    total = engine.tenant_volume_usage("billing")
    assert (total.volumes, total.used) == (2, u1.used + u2.used)
    assert engine.tenant_volume_usage("nobody-here").volumes == 0


def test_import_refuses_unsafe_and_oversized_archives(engine: Engine, busybox: Image) -> None:
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    evil.seek(0)
    with pytest.raises(UnsafeArchive):
        engine.volume_import("evil", evil, size=8 * MIB)
    with pytest.raises(VolumeNotFound):
        engine.volume("evil")
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w") as tar:
        info = tarfile.TarInfo("big")
        info.size = 12 * MIB
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    big.seek(0)
    with pytest.raises(QuotaExceeded):
        engine.volume_import("tiny", big, size=8 * MIB)
    with pytest.raises(VolumeNotFound):
        engine.volume("tiny")
    nothing_left(engine)


@pytest.mark.parametrize(
    "make",
    [
        lambda e: e.volume_create("neg", size=-1),
        lambda e: e.volume_create("zero", size=0),
        lambda e: e.volume_create("huge", size=2**60),
        lambda e: e.volume_create("disk-sized", size=10**15),
        lambda e: e.volume_create("a/b", size=8 * MIB),
        lambda e: e.volume_create("..", size=8 * MIB),
        lambda e: e.volume_create("x..y"),
        lambda e: e.volume_create("ok", tenant="../t"),
        lambda e: e.run(ContainerSpec(image="busybox", mounts=(MountSpec(kind="tmpfs", target="/t"),))),
        lambda e: e.run(
            ContainerSpec(image="busybox", mounts=(MountSpec(kind="tmpfs", target="/t", size=2**62),))
        ),
        lambda e: e.run(
            ContainerSpec(
                image="busybox",
                allow_privileged=True,
                mounts=(MountSpec(kind="bind", source="/no/such/path", target="/x"),),
            )
        ),
        lambda e: e.run(ContainerSpec(image="busybox", mounts=(vol("../up"),))),
        lambda e: e.run(ContainerSpec(image="busybox", mounts=(vol("v1", "/proc/x"),))),
        lambda e: e.run(ContainerSpec(image="busybox", mounts=(vol("v1", "/d"), vol("v2", "/d")))),
        lambda e: e.run(ContainerSpec(image="busybox", mounts=(vol("v1", "relative"),))),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing(engine: Engine, busybox: Image, make: object) -> None:
    with pytest.raises(InvalidSpec):
        make(engine)  # type: ignore[operator]
    assert engine.volume_list() == []
    assert engine.list(all=True) == []
    assert [p.name for p in engine.paths.volumes.iterdir()] == []
    nothing_left(engine)


def test_failed_create_removes_the_volume_it_made(engine: Engine, busybox: Image) -> None:
    engine.volume_create("existing", size=8 * MIB)
    # crun cannot mount a directory over the file /bin/sh: the create fails after the volumes
    # were attached, so the volume made on first use goes and the existing one is released
    with pytest.raises(RuntimeFailure):
        engine.run(
            ContainerSpec(
                image="busybox", command=("true",), mounts=(vol("auto", "/bin/sh"), vol("existing"))
            )
        )
    assert [v.name for v in engine.volume_list()] == ["existing"]
    assert engine.volumes.users("existing") == []
    assert engine.list(all=True) == []
    nothing_left(engine)


def test_no_leaks_after_50_create_rm_cycles(engine: Engine, busybox: Image) -> None:
    engine.volume_create("long-lived", size=8 * MIB)
    for i in range(50):
        name = f"cycle-{i}"
        engine.volume_create(name, size=8 * MIB)
        c = engine.create(
            ContainerSpec(
                image="busybox",
                command=("true",),
                mounts=(vol(name, "/a"), vol("long-lived", "/b", ro=True), vol(f"auto-{i}", "/c")),
            )
        )
        engine.remove(c.id)
        engine.volume_remove(name)
        engine.volume_remove(f"auto-{i}")
        assert disk.loop_devices_backed_by(engine.paths.root, settle=2) == []
    assert [v.name for v in engine.volume_list()] == ["long-lived"]
    assert sorted(p.name for p in engine.paths.volumes.iterdir()) == ["long-lived"]
    nothing_left(engine)


def test_concurrent_first_use_creates_the_volume_once(engine: Engine, busybox: Image) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def make(_i: int) -> str:
        spec = ContainerSpec(image="busybox", command=("true",), mounts=(vol("raced", "/r"),))
        return engine.create(spec).id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(make, range(4)))
    assert [v.name for v in engine.volume_list()] == ["raced"]
    assert sorted(engine.volumes.users("raced")) == sorted(ids)
    for cid in ids:
        engine.remove(cid)
    assert engine.volumes.users("raced") == []
    nothing_left(engine)


def test_export_does_not_follow_links_a_tenant_planted(engine: Engine, busybox: Image) -> None:
    engine.volume_create("trap", size=8 * MIB)
    code, out = run(
        engine, "ln -s /etc /data/etc && ln -s /etc/shadow /data/shadow && echo ok > /data/f", vol("trap")
    )
    assert code == 0, out
    buf = io.BytesIO()
    engine.volume_export("trap", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {".", "etc", "shadow", "f"}
    assert members["etc"].issym() and members["shadow"].issym()
    nothing_left(engine)


def test_a_mount_namespace_holding_a_copy_never_gets_a_second_file_system(
    engine: Engine, busybox: Image
) -> None:
    """Another process (a concurrent `crun create`, say) may copy the host's mounts while a
    volume is mounted: after our unmount its ext4 stays alive there. Mounting it again must
    reuse that loop device (two live ext4 instances on one image would corrupt it), and
    usage must not read the stale superblock."""
    import subprocess

    engine.volume_create("linger", size=16 * MIB)
    holder_ctr = engine.create(ContainerSpec(image="busybox", command=("true",), mounts=(vol("linger"),)))
    image = engine.volumes.directory("linger") / "disk.ext4"
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while str(engine.volumes.data_dir("linger")) not in Path(f"/proc/{holder.pid}/mountinfo").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        engine.remove(holder_ctr.id)  # our mount goes; the copy keeps the file system alive
        assert not disk.is_mountpoint(engine.volumes.data_dir("linger"))
        device = disk.attached_loop_device(image)
        assert device is not None
        code, out = run(engine, "dd if=/dev/zero of=/data/f bs=1M count=3 2>&1 && sync", vol("linger"))
        assert code == 0, out
        assert disk.attached_loop_device(image) == device
        assert len(disk.loop_devices_backed_by(engine.paths.root)) == 1
        assert 3 * MIB <= engine.volumes.usage("linger").used < 4 * MIB
        assert run(engine, "ls -l /data/f", vol("linger"))[1].split()[4] == str(3 * MIB)
    finally:
        holder.kill()
        holder.wait()
    assert disk.loop_devices_backed_by(engine.paths.root, settle=2) == []
    assert 3 * MIB <= engine.volumes.usage("linger").used < 4 * MIB  # from the superblock now
    nothing_left(engine)


def test_mounts_left_by_a_crash_are_tidied(engine: Engine, busybox: Image) -> None:
    """A marker of a container that no longer exists (the engine died mid-removal) does not
    keep the volume mounted or in use."""
    engine.volume_create("crashed", size=8 * MIB)
    marker = engine.volumes.directory("crashed") / "users" / ("f" * 64)
    marker.touch()
    engine.volumes.ensure_mounted("crashed")
    assert engine.volumes.users("crashed") == []  # the stale marker is dropped
    assert not marker.exists()
    assert engine.volumes.unmount_unused() == ["crashed"]
    assert not disk.is_mountpoint(engine.volumes.data_dir("crashed"))
    engine.volume_remove("crashed")  # not in use: no -f needed
    nothing_left(engine)
