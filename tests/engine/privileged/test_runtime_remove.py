"""Removing real containers: the directory goes to the trash at once and is deleted off the
caller's path (engine.runtime.trash), with nothing mounted and nothing outside it touched.

Safety: the links a container writes here point only at throw-away files under this test's
tmp_path, or relative to where they stand inside the container's own upper directory. None
points at "/" or a host path, so a deleter that followed links would fail these tests, not
delete the machine they run on as root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, SecretFile

pytestmark = pytest.mark.privileged

DEPTH = 1500  # deeper than Python's recursion limit: shutil.rmtree alone raises RecursionError


def mount_points_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` in this process's table (read here, not via the engine)."""
    top = os.path.realpath(root)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == top or p.startswith(top + "/")]


def sleeper(name: str | None = None, **kwargs: object) -> ContainerSpec:
    return ContainerSpec(image="busybox", command=("sleep", "600"), name=name, **kwargs)  # type: ignore[arg-type]


def test_a_removed_name_can_be_taken_again_at_once(engine: Engine, busybox: Image) -> None:
    first = engine.run(sleeper("web"))
    engine.remove(first.id, force=True)
    # no waiting for the trash: the old directory is renamed away, its name free
    second = engine.run(sleeper("web"))
    assert second.id != first.id and engine.get("web").id == second.id
    assert not engine.paths.containers.joinpath(first.id).exists()
    assert [c.id for c in engine.list(all=True)] == [second.id]
    engine.remove("web", force=True)
    assert engine.containers.store.trash.wait(timeout=60)
    assert os.listdir(engine.paths.trash) == []


def test_after_remove_nothing_is_mounted_under_the_root(engine: Engine, busybox: Image) -> None:
    c = engine.run(sleeper(secrets=(SecretFile("api-key", b"k3y"),)))
    bundle = engine.paths.containers / c.id
    mounted = mount_points_under(bundle)
    assert any(p.endswith("/rootfs") for p in mounted), mounted  # the overlay and the secrets tmpfs
    assert len(mounted) >= 2, mounted
    engine.remove(c.id, force=True)
    assert mount_points_under(engine.paths.root) == []
    assert engine.containers.store.trash.wait(timeout=60)
    assert mount_points_under(engine.paths.root) == [] and os.listdir(engine.paths.trash) == []


def test_a_crash_leftover_in_the_trash_is_swept_when_an_engine_opens(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", "echo data > /data.txt")))
    engine.wait(c.id, timeout=30)
    trash = engine.containers.store.trash
    # A process that died between the rename and the delete: its delete never happens.
    trash._delete = lambda _path: None
    engine.remove(c.id)
    assert trash.wait(timeout=60)
    (leftover,) = os.listdir(engine.paths.trash)
    assert leftover.startswith(c.id + ".")
    assert (engine.paths.trash / leftover / "upper" / "data.txt").read_text() == "data\n"
    reopened = Engine(root=engine.paths.root, instance=engine.instance)
    assert reopened.containers.store.trash.wait(timeout=60)
    assert os.listdir(engine.paths.trash) == []


def test_links_and_a_deep_tree_a_container_wrote_are_removed_and_nothing_outside(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"  # throw-away files the container's links point at
    (outside / "dir").mkdir(parents=True)
    (outside / "keep.txt").write_text("precious")
    (outside / "dir" / "keep-too.txt").write_text("precious")
    script = f"""
        set -e
        mkdir -p /data/sub && echo mine > /data/sub/own.txt
        ln -s {outside / "keep.txt"} /data/to-file
        ln -s {outside / "dir"} /data/to-dir
        ln -s {outside / "dir"}/ /data/to-dir-slash
        ln -s ../sub /data/sub/to-parent-sub
        ln -s sub/own.txt /data/to-own
        cd /data
        i=0
        while [ $i -lt {DEPTH} ]; do mkdir d; cd d; i=$((i+1)); done
        echo deep > leaf
        ln -s {outside / "dir"} to-dir-deep
    """
    c = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", script)))
    assert engine.wait(c.id, timeout=120).exit_code == 0, list(engine.logs(c.id))
    upper = engine.paths.containers / c.id / "upper" / "data"
    assert os.readlink(upper / "to-file") == str(outside / "keep.txt")  # the links are really there
    assert os.readlink(upper / "to-dir") == str(outside / "dir")
    assert upper.joinpath(*["d"] * DEPTH, "leaf").read_text() == "deep\n"  # the deep tree is there
    engine.remove(c.id)
    assert engine.containers.store.trash.wait(timeout=120)
    assert os.listdir(engine.paths.trash) == [] and os.listdir(engine.paths.containers) == []
    assert (outside / "keep.txt").read_text() == "precious"
    assert (outside / "dir" / "keep-too.txt").read_text() == "precious"
    assert sorted(os.listdir(outside)) == ["dir", "keep.txt"] and os.listdir(outside / "dir") == [
        "keep-too.txt"
    ]
