"""What `docker ps` reads from memory must still be true: caches are dropped when the disk changes.

Real files and real processes (a Python child naming the container id on its command line stands
in for conmon); no crun. The engine is a scratch one under tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.dockerapi import record
from engine.dockerapi.listing import ListEncoder
from engine.dockerapi.record import DockerRecord
from engine.dockerapi.render import summary_json
from engine.engine import Engine
from engine.errors import ContainerNotFound
from engine.runtime.model import Container
from engine.runtime.monitors import MonitorWatch, cmdline_names


def _monitor(cid: str) -> subprocess.Popen[bytes]:
    """A process with ``cid`` on its command line, as conmon has (once it has exec'd)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", cid])
    for _ in range(1000):
        if cmdline_names(proc.pid, cid):
            return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the stand-in monitor never started")


def _record(cid: str, conmon_pid: int, status: str = "running") -> Container:
    return Container(
        id=cid,
        name=f"c{cid[:6]}",
        tenant="default",
        image="busybox:latest",
        image_id="sha256:" + "0" * 64,
        command=["sleep", "600"],
        status=status,
        created="2026-01-01T00:00:00.000000Z",
        started_at="2026-01-01T00:00:01.000000Z",
        conmon_pid=conmon_pid,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(root=tmp_path / "root", instance="hplc1")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_monitor_is_alive_until_that_process_exits() -> None:
    cid = "a" * 64
    proc = _monitor(cid)
    watch = MonitorWatch()
    try:
        assert watch.alive(cid, proc.pid)
        assert watch.alive(cid, proc.pid)  # now from the kept pidfd
    finally:
        proc.kill()
        proc.wait()
    assert not watch.alive(cid, proc.pid)
    watch.close()


def test_a_process_not_naming_the_container_is_not_its_monitor() -> None:
    proc = _monitor("b" * 64)
    watch = MonitorWatch()
    try:
        assert not watch.alive("c" * 64, proc.pid)  # a reused pid: someone else's process
        assert not watch.alive("c" * 64, 0)
    finally:
        proc.kill()
        proc.wait()
        watch.close()


def test_a_new_monitor_pid_replaces_the_kept_one_and_pidfds_are_closed() -> None:
    cid = "d" * 64
    first, second = _monitor(cid), _monitor(cid)
    watch = MonitorWatch()
    before = _open_fds()
    try:
        assert watch.alive(cid, first.pid)
        assert watch.alive(cid, second.pid)  # restarted: a new conmon
        assert _open_fds() == before + 1
        first.kill()
        first.wait()
        assert watch.alive(cid, second.pid)
        watch.keep_only(set())
        assert _open_fds() == before
        assert watch.alive(cid, second.pid)
        watch.forget(cid)
        assert _open_fds() == before
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()
    assert not watch.alive(cid, second.pid)


def test_beyond_the_cap_monitors_are_checked_through_proc() -> None:
    cid = "e" * 64
    proc = _monitor(cid)
    watch = MonitorWatch(max_cached=0)
    before = _open_fds()
    try:
        assert watch.alive(cid, proc.pid)
        assert _open_fds() == before
    finally:
        proc.kill()
        proc.wait()
    assert not watch.alive(cid, proc.pid)


def test_an_exit_file_appearing_flips_the_listed_state(engine: Engine) -> None:
    cid = "f" * 64
    proc = _monitor(cid)
    try:
        engine.containers.store.directory(cid).mkdir(parents=True)
        engine.containers.store.save(_record(cid, proc.pid))
        assert [c.status for c in engine.list()] == ["running"]
        assert [c.status for c in engine.list()] == ["running"]  # cached record, kept pidfd
        engine.containers.exit_dir.mkdir(parents=True, exist_ok=True)
        (engine.containers.exit_dir / cid).write_text("3")  # conmon writes it, then exits
        listed = engine.list(all=True)
        assert [(c.status, c.exit_code) for c in listed] == [("exited", 3)]
        assert engine.list() == []
        assert engine.get(cid).status == "exited"  # saved, not only shown
    finally:
        proc.kill()
        proc.wait()


def test_a_monitor_gone_without_an_exit_file_is_listed_exited(engine: Engine) -> None:
    cid = "9" * 64
    proc = _monitor(cid)
    engine.containers.store.directory(cid).mkdir(parents=True)
    engine.containers.store.save(_record(cid, proc.pid))
    assert [c.status for c in engine.list()] == ["running"]
    proc.kill()
    proc.wait()
    assert [(c.status, c.exit_code) for c in engine.list(all=True)] == [("exited", 255)]


def test_a_record_changed_on_disk_is_read_again(engine: Engine) -> None:
    cid = "8" * 64
    store = engine.containers.store
    store.directory(cid).mkdir(parents=True)
    store.save(_record(cid, 0, status="created"))
    assert [c.name for c in store.all()] == [f"c{cid[:6]}"]
    renamed = _record(cid, 0, status="created")
    renamed.name = "renamed"
    store.save(renamed)
    assert [c.name for c in store.all()] == ["renamed"]
    listed = next(store.all())
    listed.name = "changed in memory only"
    assert [c.name for c in store.all()] == ["renamed"]  # callers get copies


def test_a_docker_record_changed_on_disk_is_read_again(tmp_path: Path) -> None:
    record.save(tmp_path, DockerRecord(restart_count=1))
    assert record.load(tmp_path).restart_count == 1
    record.save(tmp_path, DockerRecord(restart_count=2))
    assert record.load(tmp_path).restart_count == 2
    # Same size and the same second: the inode and nanosecond mtime still differ.
    path = tmp_path / record.RECORD_FILE
    stamp = path.stat().st_mtime_ns
    record.save(tmp_path, DockerRecord(restart_count=3))
    os.utime(path, ns=(stamp, stamp))
    assert record.load(tmp_path).restart_count == 3
    path.unlink()
    assert record.load(tmp_path).restart_count == 0


def test_list_items_are_the_rendered_summary_and_follow_changes(engine: Engine) -> None:
    cid = "7" * 64
    store = engine.containers.store
    store.directory(cid).mkdir(parents=True)
    original = _record(cid, 0, status="created")
    original.labels = {"tier": "web"}
    store.save(original)
    encoder = ListEncoder()
    now = datetime.now(UTC)
    rec = DockerRecord(exposed_ports=["80/tcp"])

    def listed() -> dict[str, object]:
        container = next(store.all())
        item = json.loads(encoder.item(container, rec, now))
        assert item == summary_json(container, rec, now)
        return item

    assert listed()["Labels"] == {"tier": "web"}
    assert listed()["Labels"] == {"tier": "web"}  # from the encoded part kept
    relabelled = _record(cid, 0, status="created")
    relabelled.labels = {"tier": "db"}
    store.save(relabelled)
    assert listed()["Labels"] == {"tier": "db"}
    rec = DockerRecord(exposed_ports=["443/tcp"], host_config={"NetworkMode": "none"})
    item = listed()
    assert item["Ports"] == [{"PrivatePort": 443, "Type": "tcp"}]
    assert item["HostConfig"] == {"NetworkMode": "none"}
    started = _record(cid, 0)
    started.labels = {"tier": "db"}
    store.save(started)
    assert (listed()["State"], listed()["Status"]) == ("running", summary_json(started, rec, now)["Status"])


def test_quick_same_size_saves_are_never_listed_stale(engine: Engine) -> None:
    # Each save is a new file; ext4 hands the freed inode to the next one but one, and on a kernel
    # with coarse timestamps (Debian 12's 6.1) it gets the same mtime within a tick: the identity
    # of the file listed before, with other content.
    cid = "6" * 64
    store = engine.containers.store
    store.directory(cid).mkdir(parents=True)
    for round_ in range(200):
        for name in (f"a{round_:03d}", "bbbb", f"c{round_:03d}"):
            record_ = _record(cid, 0, status="created")
            record_.name = name
            store.save(record_)
            if name != "bbbb":
                assert [c.name for c in store.all()] == [name]


def test_a_whole_id_is_found_without_listing_and_a_missing_one_named(engine: Engine) -> None:
    cid = "5" * 64
    store = engine.containers.store
    store.directory(cid).mkdir(parents=True)
    store.save(_record(cid, 0, status="created"))
    assert store.find(cid).id == cid
    assert store.find(cid[:12]).id == cid
    with pytest.raises(ContainerNotFound, match=f"no such container: {'4' * 64}"):
        store.find("4" * 64)


def test_a_stale_copy_never_overwrites_an_exit_recorded_meanwhile(engine: Engine) -> None:
    cid = "3" * 64
    proc = _monitor(cid)
    store = engine.containers.store
    store.directory(cid).mkdir(parents=True)
    store.save(_record(cid, proc.pid))
    stale = store.load(cid)  # read while it ran
    proc.kill()
    proc.wait()
    # Another thread saw the exit file, recorded code 3 and (removing) deleted the exit file.
    exited = _record(cid, proc.pid, status="exited")
    exited.exit_code = 3
    store.save(exited)
    seen = engine.containers.refresh(stale)
    assert (seen.status, seen.exit_code) == ("exited", 3)
    assert store.load(cid).exit_code == 3
    store.delete(exited)
    gone = engine.containers.refresh(stale)
    assert gone.status == "exited"
    assert not store.directory(cid).exists()  # not brought back by a save
