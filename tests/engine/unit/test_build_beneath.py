"""Reads confined to a directory (engine.build.beneath), with the real openat2 and with the fallback walk."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.build import beneath
from engine.build.context import SourceTree
from engine.errors import InvalidSpec

MARKER = "TOP-SECRET-MARKER-4711"


@pytest.fixture(params=["openat2", "walk"])
def seam(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test runs with the kernel's openat2 and with the O_NOFOLLOW walk used without it."""
    if request.param == "walk":
        monkeypatch.setattr(beneath, "OPENAT2", beneath.walk_openat2)
    else:
        assert beneath.OPENAT2 is not beneath.walk_openat2, "this kernel should have openat2"
    yield request.param


@pytest.fixture()
def ctx(tmp_path: Path) -> Path:
    secret = tmp_path / "secret"
    secret.write_text(f"{MARKER} root only\n")
    secret.chmod(0o600)
    root = tmp_path / "ctx"
    (root / "sub").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM busybox\n")
    (root / "sub" / "file").write_text("inside\n")
    (root / "inner-link").symlink_to("sub/file")
    (root / "sub" / "up-link").symlink_to("../Dockerfile")
    (root / "abs-out").symlink_to(secret)
    (root / "rel-out").symlink_to("../secret")
    (root / "shadow").symlink_to("/etc/shadow")
    (root / "zero").symlink_to("/dev/zero")
    (root / "loop").symlink_to("loop")
    (root / "dir-out").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    return root


def _refused(call: object, *args: object, match: str, **kwargs: object) -> str:
    with pytest.raises(InvalidSpec, match=match) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert MARKER not in info.value.message
    return info.value.message


def test_reads_inside_and_follows_links_that_stay_inside(seam: str, ctx: Path) -> None:
    assert beneath.read_file(ctx, "Dockerfile", what="the build context", limit=100) == b"FROM busybox\n"
    assert beneath.read_file(ctx, "inner-link", what="ctx", limit=100) == b"inside\n"
    assert beneath.read_file(ctx, "sub/up-link", what="ctx", limit=100) == b"FROM busybox\n"
    assert beneath.read_file(ctx, "sub/../sub/file", what="ctx", limit=100) == b"inside\n"


@pytest.mark.parametrize("rel", ["abs-out", "rel-out", "shadow", "zero", "../secret", "dir-out/secret"])
def test_links_and_paths_out_of_the_tree_are_refused(seam: str, ctx: Path, rel: str) -> None:
    message = _refused(
        beneath.read_file, ctx, rel, what="the build context", limit=1 << 20, match="leads out"
    )
    assert repr(rel) in message


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_hanging(seam: str, ctx: Path) -> None:
    _refused(beneath.read_file, ctx, "fifo", what="the build context", limit=100, match="'fifo' .* FIFO")


def test_size_bound_is_checked_before_reading(seam: str, ctx: Path) -> None:
    (ctx / "big").write_bytes(MARKER.encode() * 100)
    _refused(
        beneath.read_file, ctx, "big", what="ctx", limit=1000, match="larger than the limit of 1000 bytes"
    )


def test_loops_missing_and_directories(seam: str, ctx: Path) -> None:
    _refused(beneath.read_file, ctx, "loop", what="ctx", limit=100, match="too many symbolic links")
    with pytest.raises(beneath.Missing):
        beneath.read_file(ctx, "nothing", what="ctx", limit=100)
    _refused(beneath.read_file, ctx, "sub", what="ctx", limit=100, match="is a directory, not a file")


def test_in_root_resolves_absolute_links_inside_the_root(seam: str, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "real").write_text("image file\n")
    (rootfs / "etc" / "alt").symlink_to("/etc/real")
    (rootfs / "up").symlink_to("../../..")
    dirfd = beneath.open_root(rootfs)
    try:
        fd = beneath.open_file(dirfd, "etc/alt", what="stage", in_root=True)
        with os.fdopen(fd, "rb") as f:
            assert f.read() == b"image file\n"
        fd = beneath.open_file(dirfd, "up/etc/real", what="stage", in_root=True)
        os.close(fd)
    finally:
        os.close(dirfd)


def test_copy_sources_refuse_special_files_and_links_out(seam: str, ctx: Path) -> None:
    tree = SourceTree(ctx, beneath=True)
    _refused(tree.resolve, ["shadow"], "COPY", match="COPY: 'shadow' leads out of the build context")
    _refused(tree.resolve, ["dir-out/secret"], "COPY", match="leads out of the build context")
    _refused(tree.resolve, ["fifo"], "COPY", match="'fifo' in the build context is a FIFO")
    # copying the whole context meets the FIFO while walking: refused, naming it
    _refused(tree.resolve, ["."], "COPY", match="'fifo' in the build context is a FIFO")
    os.unlink(ctx / "fifo")
    (everything,) = tree.resolve(["."], "COPY")
    links = {e.rel: e.link_target for e in everything.entries if stat.S_ISLNK(e.mode)}
    assert links["shadow"] == "/etc/shadow"  # a link below a copied directory is copied as a link


def test_copy_sources_are_bounded_in_total(seam: str, ctx: Path) -> None:
    (ctx / "a").write_bytes(b"x" * 600)
    (ctx / "b").write_bytes(b"x" * 600)
    tree = SourceTree(ctx, beneath=True, limit=1000)
    tree.resolve(["a"], "COPY")
    tree.resolve(["a"], "COPY")  # the same file twice counts once
    _refused(tree.resolve, ["b"], "COPY", match="add up to 1200 bytes, over the limit of 1000 bytes")


def test_a_file_swapped_for_a_link_after_planning_is_not_read(seam: str, ctx: Path) -> None:
    tree = SourceTree(ctx, beneath=True)
    (source,) = tree.resolve(["sub"], "COPY")
    (entry,) = [e for e in source.entries if e.rel == "file"]
    os.unlink(ctx / "sub" / "file")
    (ctx / "sub" / "file").symlink_to(ctx.parent / "secret")
    _refused(entry.open, match="is a symbolic link, not a file")


def test_a_file_growing_after_planning_is_read_only_up_to_its_planned_size(seam: str, ctx: Path) -> None:
    (ctx / "log").write_bytes(b"x" * 10)
    tree = SourceTree(ctx, beneath=True, limit=100)
    ((entry,),) = [s.entries for s in tree.resolve(["log"], "COPY")]
    with open(ctx / "log", "ab") as f:
        f.write(MARKER.encode() * 10)  # now 10 + 220 bytes: over the limit
    _refused(entry.open, match="'log' in the build context is larger than the limit of 100 bytes")
    (ctx / "log").write_bytes(b"y" * 50)
    assert b"".join(entry.chunks()) == b"y" * 10
