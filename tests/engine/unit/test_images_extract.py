"""Layer extraction: hostile archives are refused or neutralised, nothing escapes, nothing half-done stays."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from engine.errors import CorruptBlob, InvalidArchive, InvalidSpec, UnsafeArchive
from engine.images.extract import ExtractStats, extract_layer, remove_tree, shift_id
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from tests.engine.images_fixtures import (
    MTIME,
    Entry,
    blockdev,
    chardev,
    d,
    f,
    fifo,
    hard,
    plant_image,
    rootfs,
    sym,
    tar_bytes,
    tree,
)


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A directory next to the destination that hostile members aim at."""
    o = tmp_path / "outside"
    o.mkdir()
    (o / "secret").write_text("keep me")
    return o


def extract(tmp_path: Path, entries: list[Entry], uid_base: int = 0) -> tuple[Path, ExtractStats]:
    dest = tmp_path / "box" / "dest"
    dest.mkdir(parents=True, exist_ok=True)
    stats = extract_layer(
        io.BytesIO(tar_bytes(entries)), dest, uid_base=uid_base, chown=False, xattr_prefix="user.overlay."
    )
    return dest, stats


def snapshot(tmp_path: Path) -> list[str]:
    """Everything below tmp_path except the destination's contents."""
    return [p for p in tree(tmp_path) if p not in ("box", "box/dest") and not p.startswith("box/dest/")]


# -- refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_entries", "message"),
    [
        (lambda t: [f("../evil", b"x")], "'..'"),
        (lambda t: [d("a"), f("a/../../evil", b"x")], "'..'"),
        (lambda t: [f(f"{t}/abs-evil", b"x")], "absolute path"),
        (lambda t: [sym("link", str(t / "outside")), f("link/x", b"x")], "goes through the symlink 'link'"),
        (lambda t: [sym("link", "/"), f(f"link{t}/outside/x", b"x")], "goes through the symlink 'link'"),
        (lambda t: [d("a"), sym("a/up", "../.."), f("a/up/evil", b"x")], "symlink 'a/up'"),
        (lambda t: [hard("pw", "/etc/passwd")], "absolute path"),
        (lambda t: [hard("s", "../../outside/secret")], "'..'"),
        (lambda t: [hard("s", "etc/passwd")], "not a file extracted earlier"),
        (lambda t: [sym("l", str(t / "outside")), hard("h", "l/secret")], "not a file extracted earlier"),
        (lambda t: [f("x", b"x"), Entry(".", b"0")], "root directory"),
    ],
    ids=[
        "dotdot",
        "dotdot-nested",
        "absolute",
        "symlink-parent",
        "symlink-to-root-parent",
        "relative-symlink",
        "hardlink-etc-passwd",
        "hardlink-dotdot",
        "hardlink-not-in-layer",
        "hardlink-through-symlink",
        "file-over-root",
    ],
)
def test_hostile_members_are_refused_and_nothing_escapes(
    tmp_path: Path, outside: Path, make_entries: object, message: str
) -> None:
    passwd_links = os.stat("/etc/passwd").st_nlink
    before = snapshot(tmp_path)
    entries = make_entries(tmp_path)  # type: ignore[operator]
    with pytest.raises(UnsafeArchive) as exc:
        extract(tmp_path, entries)
    assert message in str(exc.value)
    assert entries[-1].name in str(exc.value)  # the message names the member
    assert snapshot(tmp_path) == before
    assert (outside / "secret").read_text() == "keep me"
    assert os.stat(outside / "secret").st_nlink == 1
    assert os.stat("/etc/passwd").st_nlink == passwd_links
    assert not (tmp_path / "abs-evil").exists()


def test_symlinks_are_created_but_never_followed_while_writing(tmp_path: Path, outside: Path) -> None:
    before = snapshot(tmp_path)
    dest, stats = extract(
        tmp_path,
        [
            sym("etc", "/etc"),  # normal: resolved inside the container
            sym("victim", str(outside / "secret")),
            f("victim", b"pwned"),  # replaces the symlink, does not write through it
            sym("dir", str(outside)),
            d("dir"),  # a directory replaces the symlink
            f("dir/inside", b"ok"),
            sym("l", str(outside / "secret")),
            hard("h", "l"),  # a hard link to the symlink itself
        ],
    )
    assert os.readlink(dest / "etc") == "/etc"
    assert (dest / "victim").read_bytes() == b"pwned" and not (dest / "victim").is_symlink()
    assert (dest / "dir").is_dir() and not (dest / "dir").is_symlink()
    assert (dest / "dir" / "inside").read_bytes() == b"ok"
    assert os.readlink(dest / "h") == str(outside / "secret")
    assert (outside / "secret").read_text() == "keep me"
    assert snapshot(tmp_path) == before
    assert stats.symlinks == 4 and stats.hardlinks == 1


def test_devices_are_skipped_and_fifos_kept(tmp_path: Path) -> None:
    dest, stats = extract(
        tmp_path,
        [d("dev"), chardev("dev/null"), blockdev("dev/sda"), chardev("dev/zero", 1, 5), fifo("run-fifo")],
    )
    assert stats.skipped_devices == ["dev/null", "dev/sda", "dev/zero"]
    assert os.listdir(dest / "dev") == []
    assert stat.S_ISFIFO(os.lstat(dest / "run-fifo").st_mode)


def test_setuid_and_setgid_bits_are_stripped(tmp_path: Path) -> None:
    dest, stats = extract(
        tmp_path,
        [
            d("bin"),
            f("bin/su", b"x", 0o4755),
            f("bin/sg", b"x", 0o2755),
            d("shared", 0o3775),
            f("bin/plain", b"x", 0o1755),
        ],
    )
    assert stat.S_IMODE(os.stat(dest / "bin" / "su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "bin" / "sg").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "shared").st_mode) == 0o1775
    assert stat.S_IMODE(os.stat(dest / "bin" / "plain").st_mode) == 0o1755
    assert stats.stripped_setid == 3


def test_modes_mtimes_links_and_replacement(tmp_path: Path) -> None:
    dest, _ = extract(
        tmp_path,
        [
            d("./", 0o750),
            d("ro", 0o555),
            f("ro/inside", b"in", 0o600),  # a child of a read-only dir (works as non-root too)
            f("data", b"1"),
            f("data", b"22"),  # a later member replaces an earlier one
            hard("data-link", "data"),
            f("gone-dir/x", b"x"),  # parent created implicitly
            f("gone-dir", b"now a file"),
            sym("rel", "data"),
        ],
    )
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(dest / "ro").st_mode) == 0o555
    assert (dest / "ro" / "inside").read_bytes() == b"in"
    assert stat.S_IMODE(os.stat(dest / "ro" / "inside").st_mode) == 0o600
    assert (dest / "data").read_bytes() == b"22"
    assert os.stat(dest / "data").st_ino == os.stat(dest / "data-link").st_ino
    assert (dest / "gone-dir").read_bytes() == b"now a file"
    for p in ("ro", "ro/inside", "data", "rel"):
        assert int(os.lstat(dest / p).st_mtime) == MTIME, p
    remove_tree(tmp_path / "box")
    assert not (tmp_path / "box").exists()


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    dest, stats = extract(
        tmp_path,
        [
            f("removed-later", b"x"),
            f(".wh.removed-later"),
            d("etc"),
            f("etc/.wh.passwd"),
            d("opaque"),
            f("opaque/.wh..wh..opq"),
            f("opaque/new", b"n"),
            f(".wh..wh.plnk"),  # aufs bookkeeping: ignored
        ],
    )
    for name in ("removed-later", "etc/passwd"):
        st = os.lstat(dest / name)
        assert stat.S_ISCHR(st.st_mode), name
        assert st.st_rdev == os.makedev(0, 0), name
    assert not (dest / ".wh.removed-later").exists()
    assert not (dest / "etc" / ".wh.passwd").exists()
    assert not (dest / ".wh..wh.plnk").exists()
    assert os.getxattr(dest / "opaque", "user.overlay.opaque") == b"y"
    assert (dest / "opaque" / "new").read_bytes() == b"n"
    assert (stats.whiteouts, stats.opaque_dirs) == (2, 1)


def test_whiteout_without_a_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="whiteout"):
        extract(tmp_path, [f(".wh.")])


def test_id_shift_and_clamp() -> None:
    assert shift_id(0, 100000) == 100000
    assert shift_id(1000, 100000) == 101000
    assert shift_id(65535, 100000) == 165535
    assert shift_id(65536, 100000) == 100000 + 65534  # clamped to nobody
    assert shift_id(4_000_000, 0) == 65534


def test_bad_uid_base_is_refused(tmp_path: Path) -> None:
    for bad in (-1, 2**32, 2**32 - 100):
        with pytest.raises(InvalidSpec):
            extract(tmp_path, [f("x")], uid_base=bad)


def test_garbage_is_an_invalid_archive(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidArchive, match="not a valid tar"):
        extract_layer(io.BytesIO(b"garbage" * 200), dest, uid_base=0, chown=False)


# -- through the store: no partial layer directory stays ------------------------------------------


@pytest.fixture()
def store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ImageStore(paths)


def assert_no_partial_layer(store: ImageStore) -> None:
    assert [p for p in store.paths.layers.rglob("*")] == []
    assert list(store.paths.tmp.iterdir()) == []


@pytest.mark.parametrize(
    "make_entries",
    [
        lambda t: [d("etc"), f("etc/ok", b"ok"), f("../evil", b"x")],
        lambda t: [f("ok", b"ok"), f(f"{t}/evil", b"x")],
        lambda t: [f("ok", b"ok"), sym("link", "/"), f(f"link{t}/evil", b"x")],
        lambda t: [f("ok", b"ok"), hard("pw", "/etc/passwd")],
        lambda t: [f("ok", b"ok"), hard("pw", "etc/passwd")],
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink-absolute", "hardlink-outside-layer"],
)
def test_layer_dirs_refuses_hostile_layers_without_leftovers(
    store: ImageStore, tmp_path: Path, make_entries: object
) -> None:
    entries = make_entries(tmp_path)  # type: ignore[operator]
    image = store.resolve(plant_image(store, [rootfs(), tar_bytes(entries)]))
    passwd_links = os.stat("/etc/passwd").st_nlink
    with pytest.raises(UnsafeArchive):
        store.layer_dirs(image, 100000)
    assert not (tmp_path / "evil").exists()
    assert not (store.paths.root.parent / "evil").exists()
    assert os.stat("/etc/passwd").st_nlink == passwd_links
    # the good bottom layer may be unpacked; the hostile one must leave nothing
    assert [p.name for p in store.paths.layers.iterdir()] == [image.layers[0].split(":")[1]]
    assert list(store.paths.tmp.iterdir()) == []


def test_layer_dirs_detects_a_corrupt_blob(store: ImageStore) -> None:
    image = store.resolve(plant_image(store, [rootfs(), tar_bytes([f("x", b"0123456789" * 100)])]))
    top = store.blobs.path(image.layers[1])
    raw = bytearray(top.read_bytes())
    raw[600] ^= 0x01  # inside the file data: the tar still parses
    top.write_bytes(bytes(raw))
    bottom = store.blobs.path(image.layers[0])
    bottom.write_bytes(bottom.read_bytes()[:-1024])  # truncated: end-of-archive blocks gone
    with pytest.raises(CorruptBlob, match=image.layers[0]):
        store.layer_dirs(image, 0)
    assert_no_partial_layer(store)
    bottom.write_bytes(rootfs())
    with pytest.raises(CorruptBlob, match=image.layers[1]):
        store.layer_dirs(image, 0)
    assert [p.name for p in store.paths.layers.iterdir()] == [image.layers[0].split(":")[1]]
    assert list(store.paths.tmp.iterdir()) == []


def test_layer_dirs_unpacks_bottom_to_top_once(store: ImageStore) -> None:
    image = store.resolve(plant_image(store, [rootfs("one"), tar_bytes([f("two", b"2")])]))
    dirs = store.layer_dirs(image, 0)
    assert [p.parent.name for p in dirs] == [la.split(":")[1] for la in image.layers]
    assert (dirs[0] / "etc" / "one").read_text() == "one"
    marker = dirs[1] / "marker"
    marker.write_text("already unpacked")
    assert store.layer_dirs(image, 0) == dirs
    assert marker.exists()
