"""extract_layer(into=CopyTarget(...)): copying an archive into an existing directory, without root."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.errors import Conflict, UnsafeArchive
from engine.images.extract import CopyTarget, extract_layer


def archive(*members: tuple[str, bytes, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o700 if kind == tarfile.DIRTYPE else 0o640
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    buffer.seek(0)
    return buffer


def copy_into(target: Path, stream: io.BytesIO, **options: bool) -> None:
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        extract_layer(
            stream, target, uid_base=0, chown=False, whiteouts=False, into=CopyTarget(fd, **options)
        )
    finally:
        os.close(fd)


def test_the_target_keeps_its_mode_and_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir(mode=0o751)
    (target / "old").write_text("kept")
    copy_into(
        target,
        archive(
            (".", tarfile.DIRTYPE, None),
            ("d", tarfile.DIRTYPE, None),
            ("d/f", tarfile.REGTYPE, b"new"),
            (".wh.x", tarfile.REGTYPE, b"w"),
        ),
    )
    assert oct(target.stat().st_mode & 0o777) == "0o751"  # a member for '.' does not change it
    assert (target / "old").read_text() == "kept"
    assert (target / "d" / "f").read_bytes() == b"new"
    assert (target / ".wh.x").read_bytes() == b"w"  # an ordinary name here, not a whiteout


def test_devices_are_refused_and_kind_changes_only_when_allowed(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(UnsafeArchive, match="device node"):
        copy_into(tmp_path, archive(("null", tarfile.CHRTYPE, None)))
    with pytest.raises(Conflict, match="cannot overwrite directory with a non-directory"):
        copy_into(tmp_path, archive(("dir", tarfile.REGTYPE, b"x")), no_overwrite_dir_non_dir=True)
    assert (tmp_path / "dir").is_dir()
    copy_into(tmp_path, archive(("dir", tarfile.REGTYPE, b"x")))
    assert (tmp_path / "dir").read_bytes() == b"x"
    with pytest.raises(UnsafeArchive, match="would replace the target directory"):
        copy_into(tmp_path, archive((".", tarfile.REGTYPE, b"x")))
