"""Removed containers' directories are renamed into the trash and deleted off the caller's path.

Real files under tmp_path, no root: the seams are the deleter (to hold a delete back, or to
stand in for a process that died before deleting) and the mount table (``mounted_under``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import ContainerNotFound, RuntimeFailure
from engine.paths import EnginePaths
from engine.runtime import mounts
from engine.runtime.model import Container
from engine.runtime.store import ContainerStore
from engine.runtime.trash import Trash, delete_tree

REPO = Path(__file__).resolve().parents[3]


def no_mounts(_path: Path) -> list[Path]:
    return []


class HeldDelete:
    """A deleter that waits until released, then deletes for real; records what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[Path] = []

    def __call__(self, path: Path) -> None:
        self.seen.append(path)
        assert self.release.wait(10)
        delete_tree(path)


@pytest.fixture
def held() -> Iterator[HeldDelete]:
    deleter = HeldDelete()
    yield deleter
    deleter.release.set()


def make_tree(top: Path, files: int = 5, depth: int = 3) -> Path:
    """A directory with files and nested directories, as a container's bundle has."""
    deep = top.joinpath(*(f"d{i}" for i in range(depth)))
    deep.mkdir(parents=True)
    for i in range(files):
        (top / f"f{i}").write_bytes(b"x" * 100)
        (deep / f"g{i}").write_bytes(b"y")
    return top


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def record(cid: str, name: str) -> Container:
    return Container(
        id=cid,
        name=name,
        tenant="default",
        image="busybox:latest",
        image_id="sha256:" + "0" * 64,
        command=["true"],
        status="exited",
        created="2026-01-01T00:00:00.000000Z",
    )


# ---- the trash itself -----------------------------------------------------------------------------
def test_discard_moves_the_directory_at_once_and_the_worker_deletes_it(
    tmp_path: Path, held: HeldDelete
) -> None:
    trash = Trash(tmp_path / "trash", delete=held, mounted_under=no_mounts)
    (tmp_path / "trash").mkdir()
    victim = make_tree(tmp_path / "containers" / "abc")
    moved = trash.discard(victim)
    assert moved is not None and moved.parent == tmp_path / "trash" and moved.name.startswith("abc.")
    assert not victim.exists() and (moved / "f0").exists()  # moved whole, not yet deleted
    assert not trash.wait(timeout=0.05)  # the delete is held back: the caller did not wait for it
    held.release.set()
    assert trash.wait(timeout=10)
    assert held.seen == [moved] and not moved.exists()
    assert os.listdir(tmp_path / "trash") == []


def test_discard_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", mounted_under=no_mounts)
    assert trash.discard(tmp_path / "containers" / "gone") is None
    assert trash.wait(timeout=1)


def test_discard_makes_a_missing_trash_directory(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", mounted_under=no_mounts)
    victim = make_tree(tmp_path / "containers" / "abc")
    assert trash.discard(victim) is not None
    assert trash.wait(timeout=10)
    assert not victim.exists() and os.listdir(tmp_path / "trash") == []


def test_discard_refuses_while_something_is_mounted_below_and_moves_nothing(tmp_path: Path) -> None:
    victim = make_tree(tmp_path / "containers" / "abc")
    mounted = victim / "rootfs"

    def mount_table(path: Path) -> list[Path]:
        return [mounted] if path == victim else []

    trash = Trash(tmp_path / "trash", mounted_under=mount_table)
    (tmp_path / "trash").mkdir()
    before = open_fds()
    with pytest.raises(RuntimeFailure, match="rootfs is still mounted"):
        trash.discard(victim)
    assert (victim / "f0").exists() and os.listdir(tmp_path / "trash") == []
    assert open_fds() == before  # the directory's fd (and its lock) were let go


def test_the_worker_never_deletes_below_a_mount(tmp_path: Path) -> None:
    """A mount that appeared in a trash entry (only root could do that) keeps it for a later sweep."""
    mounted: list[Path] = []
    trash = Trash(tmp_path / "trash", mounted_under=lambda p: [m for m in mounted if p in (m, *m.parents)])
    (tmp_path / "trash").mkdir()
    leftover = make_tree(tmp_path / "trash" / "abc.0001")
    mounted.append(leftover / "rootfs")
    assert trash.sweep() == 1 and trash.wait(timeout=10)
    assert (leftover / "f0").exists()
    mounted.clear()
    assert trash.sweep() == 1 and trash.wait(timeout=10)
    assert not leftover.exists()


def test_a_sweep_deletes_what_a_crash_left_and_follows_no_link_out(tmp_path: Path) -> None:
    """A crash between the rename and the delete leaves trash; links in it never lead the delete out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    (outside / "dir").mkdir()
    (outside / "dir" / "keep-too.txt").write_text("precious")
    trash_dir = tmp_path / "trash"
    leftover = make_tree(trash_dir / "abc.0001", depth=60)  # a deep tree, as a hostile container writes
    (leftover / "upper").mkdir()
    (leftover / "upper" / "to-file").symlink_to(outside / "keep.txt")
    (leftover / "upper" / "to-dir").symlink_to(outside / "dir")
    # Links point only at sacrificial files under tmp_path, never at "/" or the host's files: a
    # deleter that followed links must fail this test, not delete the machine it runs on (as root).
    (trash_dir / "stray-file").write_text("not a directory")
    (trash_dir / "stray-link").symlink_to(outside)  # never anything the engine puts there
    trash = Trash(trash_dir, mounted_under=no_mounts)
    assert trash.sweep() == 3
    assert trash.wait(timeout=30)
    assert os.listdir(trash_dir) == []
    assert (outside / "keep.txt").read_text() == "precious"
    assert (outside / "dir" / "keep-too.txt").read_text() == "precious"


def test_the_delete_walk_resists_symlink_races() -> None:
    """shutil.rmtree's fd walk (openat with O_NOFOLLOW) is what makes a swapped-in link harmless."""
    assert shutil.rmtree.avoids_symlink_attacks


def deeper_than_recursion(top: Path, levels: int = 1500) -> Path:
    """A chain of ``levels`` directories below ``top`` (deeper than PATH_MAX allows by name)."""
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open("leaf", "w", opener=lambda name, flags: os.open(name, flags, dir_fd=fd)) as f:
            f.write("deep")
    finally:
        os.close(fd)
    return top


def test_a_tree_deeper_than_the_recursion_limit_is_deleted_and_no_link_followed(tmp_path: Path) -> None:
    """shutil.rmtree's walk recurses (RecursionError on a chain of 1500 directories, which any
    container can make); delete_tree moves deep directories up first and still follows no link."""
    assert sys.getrecursionlimit() < 1500
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "keep.txt").write_text("precious")
    entry = deeper_than_recursion(tmp_path / "trash" / "abc.0001")
    (entry / "d" / "to-dir").symlink_to(outside / "dir")  # only ever into tmp_path
    (entry / "d" / "to-file").symlink_to(outside / "dir" / "keep.txt")
    delete_tree(entry)
    assert not entry.exists()
    assert (outside / "dir" / "keep.txt").read_text() == "precious"


def test_the_trash_deletes_only_its_own_entries(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash", mounted_under=no_mounts)
    for name in ("", ".", "..", "a/b", "../x"):
        with pytest.raises(RuntimeFailure, match="not an entry of the trash"):
            trash._entry_path(name)
    assert trash._entry_path("abc.0001") == tmp_path / "trash" / "abc.0001"
    with pytest.raises(ValueError):
        Trash(Path("/"))
    paths = EnginePaths(tmp_path / "root")
    with pytest.raises(ValueError, match="trash of the engine root"):
        ContainerStore(paths, Trash(tmp_path / "elsewhere"))


def test_an_entry_another_process_is_deleting_is_left_to_it(tmp_path: Path) -> None:
    trash_dir = tmp_path / "trash"
    busy = make_tree(trash_dir / "abc.0001")
    other = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)  # another process's lock (flocks are per open)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        trash = Trash(trash_dir, mounted_under=no_mounts)
        assert trash.sweep() == 1 and trash.wait(timeout=10)
        assert (busy / "f0").exists()
    finally:
        os.close(other)  # that process died: the kernel let its lock go
    assert trash.sweep() == 1 and trash.wait(timeout=10)
    assert not busy.exists()


def test_a_sweep_is_bounded(tmp_path: Path, held: HeldDelete) -> None:
    trash_dir = tmp_path / "trash"
    for i in range(5):
        make_tree(trash_dir / f"c{i}.0001", files=1, depth=1)
    trash = Trash(trash_dir, delete=held, mounted_under=no_mounts)
    assert trash.sweep(limit=3) == 3
    held.release.set()
    assert trash.wait(timeout=10)
    assert len(os.listdir(trash_dir)) == 2  # the next sweep's
    assert trash.sweep(limit=3) == 2 and trash.wait(timeout=10)
    assert os.listdir(trash_dir) == []


def test_a_failed_delete_leaves_the_entry_for_the_next_sweep(tmp_path: Path) -> None:
    calls: list[Path] = []

    def failing(path: Path) -> None:
        calls.append(path)
        raise OSError("disk trouble")

    trash = Trash(tmp_path / "trash", delete=failing, mounted_under=no_mounts)
    moved = trash.discard(make_tree(tmp_path / "containers" / "abc"))
    assert trash.wait(timeout=10) and calls == [moved]
    assert moved is not None and moved.exists()
    assert Trash(tmp_path / "trash", mounted_under=no_mounts).sweep() == 1


SHORT_LIVED = """
import sys, time
from pathlib import Path
from engine.runtime.trash import Trash, delete_tree

def slow(path: Path) -> None:
    time.sleep(0.3)
    delete_tree(path)

trash = Trash(Path(sys.argv[1]) / "trash", delete=slow, mounted_under=lambda p: [])
trash.discard(Path(sys.argv[1]) / "containers" / "abc")
print("removed", flush=True)  # and exit at once, as `hpctl rm` does
"""


def test_a_short_lived_process_finishes_its_own_deletes_before_it_exits(tmp_path: Path) -> None:
    make_tree(tmp_path / "containers" / "abc")
    (tmp_path / "trash").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SHORT_LIVED, str(tmp_path)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "removed\n"), done.stderr
    assert os.listdir(tmp_path / "trash") == [] and not (tmp_path / "containers" / "abc").exists()


# ---- the mount table ------------------------------------------------------------------------------
def test_mounted_under_reads_the_table_with_its_escapes(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    line = "36 35 98:0 / {} rw,noatime master:1 - ext4 /dev/root rw\n"
    table.write_text(
        "".join(
            line.format(point)
            for point in (
                "/",
                "/r/containers/abc",  # the directory itself
                "/r/containers/abc/rootfs",
                "/r/containers/abc/secrets",
                "/r/containers/abc/with\\040space",
                "/r/containers/abcd/rootfs",  # a sibling that only shares the prefix
                "/r/volumes/v/_data",
                "/r/with\\040space/rootfs",
            )
        )
    )
    found = mounts.mounted_under(Path("/r/containers/abc"), str(table))
    assert found[-1] == Path("/r/containers/abc")  # deepest first
    assert sorted(map(str, found)) == [
        "/r/containers/abc",
        "/r/containers/abc/rootfs",
        "/r/containers/abc/secrets",
        "/r/containers/abc/with space",
    ]
    assert mounts.mounted_under(Path("/r/trash"), str(table)) == []
    assert mounts.mounted_under(Path("/r/with space"), str(table)) == [Path("/r/with space/rootfs")]


# ---- the container store and the engine -----------------------------------------------------------
def store_with(tmp_path: Path, delete: Callable[[Path], None]) -> ContainerStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ContainerStore(paths, Trash(paths.trash, delete=delete, mounted_under=no_mounts))


def test_a_deleted_container_is_gone_and_its_name_free_before_its_files_are(
    tmp_path: Path, held: HeldDelete
) -> None:
    store = store_with(tmp_path, held)
    cid = store.new_id()
    store.reserve_name("web", cid)
    store.directory(cid).mkdir()
    make_tree(store.directory(cid) / "upper")
    store.save(record(cid, "web"))
    assert [c.id for c in store.all()] == [cid]
    store.delete(record(cid, "web"))
    # the delete is still held back, and yet:
    assert store.ids() == [] and list(store.all()) == []
    for ref in ("web", cid, cid[:12]):
        with pytest.raises(ContainerNotFound):
            store.find(ref)
    again = store.new_id()
    assert store.reserve_name("web", again) == "web"
    assert len(os.listdir(store.paths.trash)) == 1
    held.release.set()
    assert store.trash.wait(timeout=10)
    assert os.listdir(store.paths.trash) == []
    assert os.listdir(store.paths.containers) == []


def test_opening_an_engine_sweeps_the_trash(tmp_path: Path) -> None:
    root = tmp_path / "root"
    EnginePaths(root).ensure()
    make_tree(root / "trash" / f"{'a' * 64}.0001", depth=10)  # a process died between rename and delete
    engine = Engine(root=root, instance="hptrash1")
    assert engine.containers.store.trash.wait(timeout=30)
    assert os.listdir(root / "trash") == []


def test_opening_an_engine_with_an_empty_trash_starts_no_thread(tmp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    Engine(root=tmp_path / "root", instance="hptrash2")
    assert "engine-trash" not in {t.name for t in threading.enumerate()} - before
