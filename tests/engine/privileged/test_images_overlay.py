"""Whiteouts and opaque directories, unpacked for overlayfs and checked through a real overlay mount."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.images.store import ImageStore
from engine.paths import EnginePaths
from tests.engine.images_fixtures import ArchiveImage, d, docker_save, f, tar_bytes

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: trusted.* xattrs, whiteout devices, overlayfs mounts"
    ),
]
UID_BASE = 200000


@pytest.fixture()
def merged(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "merged"
    m.mkdir()
    yield m
    subprocess.run(["umount", str(m)], capture_output=True, check=False)


def test_whiteouts_and_opaque_dirs_hide_lower_layers(tmp_path: Path, merged: Path) -> None:
    store = ImageStore(EnginePaths(tmp_path / "root"))
    lower = tar_bytes(
        [
            d("etc"),
            f("etc/keep", b"keep"),
            f("etc/remove", b"remove"),
            d("opaque"),
            f("opaque/old", b"old"),
            d("dir"),
            f("dir/file", b"x"),
        ]
    )
    upper = tar_bytes(
        [
            d("etc"),
            f("etc/.wh.remove"),
            d("opaque"),
            f("opaque/.wh..wh..opq"),
            f("opaque/new", b"new"),
            f(".wh.dir"),
        ]
    )
    [image] = store.import_archive(
        docker_save(tmp_path / "wh.tar", [ArchiveImage(layers=[lower, upper], tags=["wh:1"])])
    )
    bottom, top = store.layer_dirs(image, UID_BASE)

    for name in ("etc/remove", "dir"):
        st = os.lstat(top / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), name
    assert os.getxattr(top / "opaque", "trusted.overlay.opaque") == b"y"
    assert not (top / "etc" / ".wh.remove").exists()
    assert (bottom / "etc" / "remove").read_bytes() == b"remove"
    assert os.stat(top / "opaque" / "new").st_uid == UID_BASE

    work, up = tmp_path / "work", tmp_path / "upper"
    work.mkdir()
    up.mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={top}:{bottom},upperdir={up},workdir={work}",
            str(merged),
        ],
        check=True,
    )
    assert sorted(os.listdir(merged / "etc")) == ["keep"]
    assert sorted(os.listdir(merged / "opaque")) == ["new"]
    assert not (merged / "dir").exists()
    assert (merged / "etc" / "keep").read_bytes() == b"keep"
