"""Copy out of and into real containers, and the attacks a tenant's file system and archives try."""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec, UnsafeArchive
from engine.images.model import Image
from engine.runtime.copy import ContainerPathNotFound
from engine.runtime.model import Container, ContainerSpec, ExecSpec


def sh(engine: Engine, container: Container, script: str) -> str:
    proc = engine.exec(container.id, ExecSpec(command=("sh", "-c", script)), stdout=-1, stderr=-1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out.decode()


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    info.uid = info.gid = 1000
    return info


def read_tar(data: bytes) -> dict[str, tuple[bytes, tarfile.TarInfo]]:
    result = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            result[m.name] = (f.read() if f else b"", m)
    return result


@pytest.fixture()
def sleeper(engine: Engine, busybox: Image) -> Container:
    return engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))


@pytest.fixture()
def host_secret(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A host directory with a secret file, that no copy may read or change."""
    directory = tmp_path_factory.mktemp("host-secret")
    (directory / "secret").write_text("host secret\n")
    yield directory


def test_copy_out_file_and_directory_with_container_owners(engine: Engine, sleeper: Container) -> None:
    sh(
        engine,
        sleeper,
        "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && chown 1000:1000 /data/a",
    )
    out = io.BytesIO()
    info = engine.copy_from(sleeper.id, "/data", out)
    assert info.name == "data" and info.link_target == ""
    got = read_tar(out.getvalue())
    assert set(got) == {"data", "data/a", "data/sub", "data/sub/b"}
    assert got["data/a"][0] == b"one\n" and got["data/a"][1].uid == 1000  # container ids, not host ids
    assert got["data/sub/b"][1].uid == 0
    out = io.BytesIO()
    engine.copy_from(sleeper.id, "/data/.", out)  # the content, not the directory
    assert set(read_tar(out.getvalue())) == {".", "./a", "./sub", "./sub/b"}
    with pytest.raises(ContainerPathNotFound, match="Could not find the file /nope"):
        engine.copy_from(sleeper.id, "/nope", io.BytesIO())


def test_copy_in_owned_by_container_root_and_visible_inside(engine: Engine, sleeper: Container) -> None:
    token = secrets.token_hex(4)
    archive = tar_of((member("dir", tarfile.DIRTYPE, mode=0o755), None), (member("dir/f"), token.encode()))
    assert engine.copy_to(sleeper.id, "/tmp", archive) == 2
    assert sh(engine, sleeper, "cat /tmp/dir/f; stat -c '%u:%g %a' /tmp/dir/f /tmp") == (
        f"{token}0:0 644\n0:0 1777\n"  # root-owned inside; /tmp kept its own owner and mode
    )
    archive = tar_of((member("kept"), b"x"))
    engine.copy_to(sleeper.id, "/tmp", archive, keep_owners=True)
    assert sh(engine, sleeper, "stat -c '%u:%g' /tmp/kept") == "1000:1000\n"
    with pytest.raises(InvalidSpec, match="not a directory"):
        engine.copy_to(sleeper.id, "/tmp/kept", tar_of((member("x"), b"x")))
    with pytest.raises(Conflict, match="cannot overwrite directory with a non-directory"):
        engine.copy_to(sleeper.id, "/tmp", tar_of((member("dir"), b"x")), no_overwrite_dir_non_dir=True)


def test_copy_works_on_a_stopped_container(engine: Engine, busybox: Image) -> None:
    container = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", "echo made > /made")))
    engine.wait(container.id, timeout=20)
    out = io.BytesIO()
    engine.copy_from(container.id, "/made", out)
    assert read_tar(out.getvalue())["made"][0] == b"made\n"
    engine.copy_to(container.id, "/", tar_of((member("put"), b"in")))
    out = io.BytesIO()
    engine.copy_from(container.id, "/put", out)
    assert read_tar(out.getvalue())["put"][0] == b"in"


def test_links_planted_in_the_container_never_reach_host_files(
    engine: Engine, sleeper: Container, host_secret: Path
) -> None:
    """The tenant plants links to host paths; copying out through them reads only container files."""
    host = str(host_secret)
    sh(
        engine,
        sleeper,
        f"ln -s {host}/secret /leak; ln -s / /rootlink; ln -s ../../../../../../..{host} /up; "
        f"mkdir -p /dir; ln -s {host} /dir/hostdir",
    )
    for path in (
        "/leak/",
        f"/rootlink{host}/secret",
        "/up/secret",
        "/dir/hostdir/secret",
        f"{host}/secret",
    ):
        with pytest.raises(ContainerPathNotFound):
            engine.copy_from(sleeper.id, path, io.BytesIO())
    out = io.BytesIO()
    info = engine.copy_from(sleeper.id, "/leak", out)  # the link itself, not what it names
    assert info.link_target == f"{host}/secret"  # as the container resolves it (missing there)
    got = read_tar(out.getvalue())
    assert list(got) == ["leak"] and got["leak"][1].issym() and got["leak"][0] == b""
    out = io.BytesIO()
    engine.copy_from(sleeper.id, "/dir", out)
    assert b"host secret" not in out.getvalue()
    stat = engine.stat_path(sleeper.id, "/rootlink")
    assert stat.link_target == "/"


def test_copy_in_through_planted_links_stays_in_the_container(
    engine: Engine, sleeper: Container, host_secret: Path
) -> None:
    host = str(host_secret)
    sh(engine, sleeper, f"mkdir -p {host}; ln -s {host} /hostlink; mkdir /target; ln -s {host} /target/evil")
    before = {p.name: p.read_bytes() for p in host_secret.iterdir()}
    # the destination is a link to the host path: it resolves to the container's own {host}
    engine.copy_to(sleeper.id, "/hostlink", tar_of((member("secret"), b"overwritten")))
    assert sh(engine, sleeper, f"cat {host}/secret") == "overwritten"
    # a member through a link that is already in the container is refused, not followed
    with pytest.raises(UnsafeArchive, match="symlink"):
        engine.copy_to(sleeper.id, "/target", tar_of((member("evil/secret"), b"pwned")))
    assert {p.name: p.read_bytes() for p in host_secret.iterdir()} == before


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(member("../escape"), b"x")], r"'\.\.'"),
        ([(member("/abs"), b"x")], "absolute path"),
        ([(member("link", tarfile.SYMTYPE, "/"), None), (member("link/tmp/x"), b"x")], "symlink"),
        ([(member("hard", tarfile.LNKTYPE, "etc/passwd"), None)], "hard link"),
        ([(member("dev", tarfile.CHRTYPE), None)], "device node"),
    ],
    ids=["dotdot", "absolute", "through-own-link", "hardlink-out", "device"],
)
def test_hostile_archives_are_refused(
    engine: Engine, sleeper: Container, members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    sh(engine, sleeper, "mkdir /in")
    on_host = ("/escape", "/tmp/x", "/hard")
    there_before = [path for path in on_host if os.path.lexists(path)]  # a busy machine's own files
    with pytest.raises(UnsafeArchive, match=message):
        engine.copy_to(sleeper.id, "/in", tar_of(*members))
    # members before the hostile one stay (like docker); nothing lands outside /in or on the host
    assert sh(engine, sleeper, "ls -A /in; ls -A /tmp; head -1 /etc/passwd") in (
        "root:x:0:0:root:/root:/bin/sh\n",
        "link\nroot:x:0:0:root:/root:/bin/sh\n",
    )
    assert [path for path in on_host if os.path.lexists(path)] == there_before


def test_bad_paths(engine: Engine, sleeper: Container) -> None:
    with pytest.raises(InvalidSpec, match="invalid container path"):
        engine.copy_from(sleeper.id, "/a\0b", io.BytesIO())
    with pytest.raises(InvalidSpec, match="invalid container path"):
        engine.stat_path(sleeper.id, "")
