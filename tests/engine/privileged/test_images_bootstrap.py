"""Bootstrapped busybox on the real kernel: uid-shifted layers usable from a user namespace."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main
from engine.images.store import ImageStore
from engine.paths import EnginePaths

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: chowns layers into a uid range, mounts overlayfs"
    ),
]
UID_BASE = 100000
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000


@pytest.fixture()
def store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ImageStore(paths)


@pytest.fixture()
def overlay(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A merged mount point and a list to put lowerdirs into; unmounted afterwards."""
    merged = tmp_path / "merged"
    merged.mkdir()
    lowers: list[str] = []
    yield merged, lowers
    subprocess.run(["umount", str(merged)], capture_output=True, check=False)


def mount_overlay(tmp_path: Path, merged: Path, layer_dirs: list[Path], owner: int) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    for p in (upper, work):
        p.mkdir()
        os.chown(p, owner, owner)
    lower = ":".join(str(p) for p in reversed(layer_dirs))
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}",
            str(merged),
        ],
        check=True,
    )


def run_in_userns(rootfs: Path, script: str, uid_base: int, tmp_path: Path) -> tuple[int, str, str]:
    """Run ``script`` with /bin/sh chrooted into ``rootfs`` as root of a user namespace 0 -> uid_base.

    The child unshares its user and mount namespaces, this (root) process
    writes the id maps, then the child becomes uid 0 inside and execs.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    out_path, err_path = tmp_path / "userns.out", tmp_path / "userns.err"
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(ready_r)
            os.close(go_w)
            out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(err, 2)
            root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
            if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
                os._exit(90)
            os.write(ready_w, b"r")
            os.read(go_r, 1)
            os.setresgid(0, 0, 0)
            os.setgroups([])
            os.setresuid(0, 0, 0)
            os.fchdir(root_fd)  # the path to rootfs may not be searchable by the container's uids
            os.chroot(".")
            os.chdir("/")
            os.execv("/bin/sh", ["sh", "-c", script])
        except BaseException as exc:
            os.write(2, f"child setup failed: {exc!r}\n".encode())
        finally:
            os._exit(91)
    os.close(ready_w)
    os.close(go_r)
    try:
        assert os.read(ready_r, 1) == b"r"
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{pid}/{name}").write_text(f"0 {uid_base} 65536\n")
        os.write(go_w, b"g")
    finally:
        os.close(ready_r)
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
    read = lambda p: p.read_text() if p.exists() else ""  # noqa: E731
    return os.waitstatus_to_exitcode(status), read(out_path), read(err_path)


def test_busybox_layer_is_shifted_into_the_uid_range(store: ImageStore) -> None:
    image = store.bootstrap_busybox()
    [layer] = store.layer_dirs(image, UID_BASE)
    assert layer == store.paths.layers / image.layers[0].split(":")[1] / str(UID_BASE)

    assert (os.stat(layer).st_uid, os.stat(layer).st_gid) == (UID_BASE, UID_BASE)
    busybox = os.stat(layer / "bin" / "busybox")
    assert (busybox.st_uid, busybox.st_gid) == (UID_BASE, UID_BASE)
    assert stat.S_IMODE(busybox.st_mode) == 0o755
    assert os.path.islink(layer / "bin" / "sh")
    assert os.readlink(layer / "bin" / "sh") == "/bin/busybox"
    assert os.lstat(layer / "bin" / "sh").st_uid == UID_BASE
    tmp = os.stat(layer / "tmp")
    assert stat.S_IMODE(tmp.st_mode) == 0o1777 and tmp.st_uid == UID_BASE
    assert stat.S_IMODE(os.stat(layer / "root").st_mode) == 0o700
    assert "root:x:0:0:" in (layer / "etc" / "passwd").read_text()
    owners = {os.lstat(p).st_uid for p in layer.rglob("*")}
    assert owners == {UID_BASE}
    # the same layer for uid_base 0 is a separate, root-owned copy
    [plain] = store.layer_dirs(image, 0)
    assert plain != layer and os.stat(plain / "bin" / "busybox").st_uid == 0


def test_container_root_can_write_its_rootfs(
    store: ImageStore, tmp_path: Path, overlay: tuple[Path, list[str]]
) -> None:
    """Mount the layers with overlayfs and run busybox in a user namespace mapping 0 -> 100000."""
    merged, _ = overlay
    image = store.bootstrap_busybox()
    mount_overlay(tmp_path, merged, store.layer_dirs(image, UID_BASE), UID_BASE)
    script = "echo hello > /root/note && mkdir /etc/new && cat /root/note && id -u && ls -ln /bin/busybox"
    code, stdout, stderr = run_in_userns(merged, script, UID_BASE, tmp_path)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[:2] == ["hello", "0"]
    assert lines[2].split()[2:4] == ["0", "0"]  # busybox owned by root inside the container
    assert os.stat(tmp_path / "upper" / "root" / "note").st_uid == UID_BASE


def test_setid_stripped_and_ids_clamped_on_disk(store: ImageStore, tmp_path: Path) -> None:
    from tests.engine.images_fixtures import f, plant_image, tar_bytes

    image = store.resolve(
        plant_image(
            store,
            [
                tar_bytes(
                    [
                        f("su", b"x", 0o4755, uid=0, gid=0),
                        f("user-file", b"x", 0o644, uid=1000, gid=100),
                        f("huge-id", b"x", 0o644, uid=70000, gid=4_000_000),
                    ]
                )
            ],
        )
    )
    [layer] = store.layer_dirs(image, UID_BASE)
    su = os.stat(layer / "su")
    assert stat.S_IMODE(su.st_mode) == 0o755 and su.st_uid == UID_BASE
    user = os.stat(layer / "user-file")
    assert (user.st_uid, user.st_gid) == (UID_BASE + 1000, UID_BASE + 100)
    huge = os.stat(layer / "huge-id")
    assert (huge.st_uid, huge.st_gid) == (UID_BASE + 65534, UID_BASE + 65534)


def test_hpctl_images_lists_the_bootstrapped_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cli-root"
    assert main(["--root", str(root), "image", "bootstrap", "busybox"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Bootstrapped image: busybox:latest (sha256:")
    assert main(["--root", str(root), "images"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"]
    row = lines[1].split()
    assert row[:2] == ["busybox", "latest"]
    assert len(row[2]) == 12
    assert lines[1].rstrip().endswith("MB")
    assert " ago " in lines[1]
    assert len(lines) == 2
    shutil.rmtree(root)
