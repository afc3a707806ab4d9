"""Volume export (fd-based walk) and import (the image layer extractor) without root."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from engine.images.extract import extract_layer
from engine.volumes.archive import export_tree


def _tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file").write_text("content\n")
    os.link(root / "dir" / "file", root / "hard")
    (root / "link").symlink_to("/etc")
    (root / "rel").symlink_to("dir/file")
    os.mkfifo(root / "pipe")
    (root / ".wh.not-a-whiteout").write_text("plain file\n")
    (root / "dir" / "file").chmod(0o640)


def test_export_keeps_links_as_links_and_never_follows_them(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    buf = io.BytesIO()
    count = export_tree(src, buf, uid_base=os.getuid())
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert count == len(members)
    assert set(members) == {
        ".",
        "dir",
        "dir/sub",
        "dir/file",
        "hard",
        "link",
        "rel",
        "pipe",
        ".wh.not-a-whiteout",
    }
    assert members["link"].issym() and members["link"].linkname == "/etc"
    assert not any(name.startswith("link/") for name in members)  # /etc was not walked
    hard = members["hard"] if members["hard"].islnk() else members["dir/file"]
    assert hard.islnk()
    assert members["pipe"].isfifo()
    assert members["dir/file"].mode == 0o640 or members["hard"].mode == 0o640
    assert all(m.uid == 0 and m.uname == "" for m in members.values())


def test_ids_outside_the_tenant_range_become_nobody(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    buf = io.BytesIO()
    export_tree(src, buf, uid_base=os.getuid() + 1)  # the owner is below the range
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        assert {m.uid for m in tar.getmembers()} == {65534}


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    _tree(src)
    buf = io.BytesIO()
    export_tree(src, buf, uid_base=os.getuid())
    buf.seek(0)
    extract_layer(buf, dest, uid_base=0, chown=False, whiteouts=False)
    assert (dest / "dir" / "file").read_text() == "content\n"
    assert os.stat(dest / "hard").st_ino == os.stat(dest / "dir" / "file").st_ino
    assert os.readlink(dest / "link") == "/etc"
    assert (dest / ".wh.not-a-whiteout").read_text() == "plain file\n"  # not turned into a whiteout
    assert (dest / "dir" / "sub").is_dir()
    assert oct((dest / "dir" / "file").stat().st_mode & 0o777) == oct(0o640)
