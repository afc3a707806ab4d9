"""Overlay upper dirs become OCI layers: whiteouts, opaque dirs, ids shifted back, mount points left out."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from engine.build.diff import write_layer
from engine.build.fs import Workspace
from engine.runtime import mounts

pytestmark = pytest.mark.privileged
BASE = 200000


@pytest.fixture()
def lower(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("privileged tests need root; CI runs as root")
        pytest.skip("needs root: mounts overlayfs and chowns into a uid range")
    layer = tmp_path / "lower"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "old.conf").write_text("old")
    (layer / "var" / "cache").mkdir(parents=True)
    (layer / "var" / "cache" / "a").write_text("a")
    for p in [layer, *layer.rglob("*")]:
        os.chown(p, BASE, BASE)
    return layer


def test_upper_dir_becomes_a_layer_with_whiteouts_and_unshifted_ids(lower: Path, tmp_path: Path) -> None:
    with Workspace(tmp_path / "tmp", [lower], BASE) as ws:
        root = ws.rootfs
        (root / "etc" / "old.conf").unlink()
        shutil.rmtree(root / "var" / "cache")
        (root / "var" / "cache").mkdir()
        (root / "var" / "cache" / "b").write_text("b")
        (root / "app").mkdir()
        (root / "app" / "run").write_text("#!/bin/sh\n")
        os.chown(root / "app" / "run", BASE + 1000, BASE + 1000)
        os.chown(root / "app", 5, 5)  # outside the tenant's range: becomes nobody
        (root / "app" / "link").symlink_to("run")
        os.link(root / "app" / "run", root / "app" / "hard")
        (root / "etc" / "hosts").write_text("")  # an empty runtime mount point: left out
        buf = io.BytesIO()
        stats = write_layer(ws.upper, buf, BASE)
        assert mounts.is_mountpoint(ws.rootfs)
    assert not (tmp_path / "tmp").exists() or list((tmp_path / "tmp").iterdir()) == []
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {
        "app",
        "app/hard",
        "app/link",
        "app/run",
        "etc",
        "etc/.wh.old.conf",
        "var",
        "var/cache",
        "var/cache/.wh..wh..opq",
        "var/cache/b",
    }
    assert (members["app/run"].uid, members["app/run"].gid) == (1000, 1000)
    assert members["app"].uid == 65534 and members["etc"].uid == 0
    assert members["app/link"].issym() and members["app/link"].linkname == "run"
    hard = {members["app/hard"], members["app/run"]}
    assert sum(1 for m in hard if m.islnk()) == 1
    assert stats.whiteouts == 2
