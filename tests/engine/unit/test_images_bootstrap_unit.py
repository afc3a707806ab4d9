"""Bootstrap helpers that need no root: the busybox rootfs, the host's Debian mirror, package names."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from engine.errors import HostNotReady, InvalidSpec
from engine.images.bootstrap import check_packages, host_debian_mirror, write_busybox_rootfs, write_tree_tar
from engine.images.store import ImageStore
from engine.paths import EnginePaths

BUSYBOX = Path("/bin/busybox")
needs_busybox = pytest.mark.skipif(
    not BUSYBOX.is_file(), reason="no /bin/busybox (apt-get install busybox-static)"
)


@needs_busybox
def test_busybox_rootfs_is_complete_and_deterministic() -> None:
    first, second = io.BytesIO(), io.BytesIO()
    write_busybox_rootfs(first)
    write_busybox_rootfs(second)
    assert first.getvalue() == second.getvalue()
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["root"].mode == 0o700
    for name in ("etc/passwd", "etc/group", "etc/hostname", "home", "var", "usr/bin", "proc", "sys", "dev"):
        assert name in members, name
    assert len({m.mtime for m in members.values()}) == 1
    names = [m for m in members if m != "."]
    assert names == sorted(names)


@needs_busybox
def test_bootstrapping_twice_gives_the_same_image_id(tmp_path: Path) -> None:
    store = ImageStore(EnginePaths(tmp_path / "root"))
    one = store.bootstrap_busybox()
    two = store.bootstrap_busybox("busybox:again")
    assert one.id == two.id
    assert store.resolve("busybox").repo_tags == ("busybox:latest", "busybox:again")
    assert one.config.cmd == ("sh",)
    assert one.config.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    assert len(list(store.paths.blobs.iterdir())) == 3
    assert list(store.paths.tmp.iterdir()) == []


def test_missing_busybox_says_how_to_install(tmp_path: Path) -> None:
    store = ImageStore(EnginePaths(tmp_path / "root"))
    with pytest.raises(HostNotReady, match="busybox-static"):
        store.bootstrap_busybox(busybox=tmp_path / "no-busybox")
    assert list(store.paths.tmp.iterdir()) == []


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "nodesource.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n"
    )
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    (d / "other.list.disabled").write_text("deb http://wrong.example/debian bookworm main\n")
    assert host_debian_mirror("bookworm", tmp_path) == "http://mirror.example/debian"


def test_mirror_from_one_line_lists_and_fallback(tmp_path: Path) -> None:
    assert host_debian_mirror("bookworm", tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/x.gpg] http://list.example/debian bookworm main contrib\n"
    )
    assert host_debian_mirror("bookworm", tmp_path) == "http://list.example/debian"
    disabled = tmp_path / "sources.list.d"
    disabled.mkdir()
    (disabled / "a.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://off.example/\nSuites: bookworm\n"
    )
    assert host_debian_mirror("bookworm", tmp_path) == "http://list.example/debian"


def test_package_names_are_checked() -> None:
    assert check_packages(["python3", "libc6-dev", "g++"]) == ["python3", "libc6-dev", "g++"]
    for bad in ("--force-yes", "a b", "Python3", "x;rm", ""):
        with pytest.raises(InvalidSpec):
            check_packages([bad])


def test_write_tree_tar_keeps_links_and_skips_dev_contents(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "not-packed").write_text("x")
    (root / "etc").mkdir()
    (root / "etc" / "a").write_text("a")
    os.link(root / "etc" / "a", root / "etc" / "b")
    os.symlink("/etc/a", root / "abs-link")
    os.mkfifo(root / "pipe")
    out = io.BytesIO()
    write_tree_tar(root, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "dev" in members and "dev/not-packed" not in members
    assert members["etc/b"].islnk() and members["etc/b"].linkname == "etc/a"
    assert members["abs-link"].issym() and members["abs-link"].linkname == "/etc/a"
    assert members["pipe"].isfifo()
    shutil.rmtree(root)
