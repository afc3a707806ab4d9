"""Users, commands, env and paths resolved inside an image root, without root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidSpec
from engine.runtime.idmap import TenantIdRanges, validate_tenant
from engine.runtime.process import normalize_signal, validate_env, validate_hostname, validate_workdir
from engine.runtime.rootpath import find_command, read_text_in_root, resolve_in_root
from engine.runtime.users import resolve_user


@pytest.fixture()
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app\n")
    tool = root / "bin/tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (root / "bin/plain").write_text("data")
    return root


def test_symlinks_resolve_inside_the_root(tmp_path: Path, rootfs: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("host secret")
    os.symlink(str(outside), rootfs / "etc/evil")
    os.symlink("../../../../..", rootfs / "up")
    assert resolve_in_root(rootfs, "/etc/evil") == rootfs / str(outside).lstrip("/")
    assert read_text_in_root(rootfs, "/etc/evil") is None
    assert resolve_in_root(rootfs, "/up/etc/passwd") == rootfs / "etc/passwd"


def test_symlink_loop_is_a_clear_error(rootfs: Path) -> None:
    os.symlink("/loop", rootfs / "loop")
    with pytest.raises(InvalidSpec, match="symbolic links"):
        resolve_in_root(rootfs, "/loop/x")


def test_find_command_searches_path_and_needs_exec_bit(rootfs: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    assert find_command(rootfs, "tool", env) == "/bin/tool"
    assert find_command(rootfs, "/bin/tool", env) == "/bin/tool"
    assert find_command(rootfs, "plain", env) is None
    assert find_command(rootfs, "missing", env) is None


def test_resolve_user_by_name_id_and_group(rootfs: Path) -> None:
    assert resolve_user(rootfs, "").uid == 0
    app = resolve_user(rootfs, "app")
    assert (app.uid, app.gid, app.additional_gids, app.home) == (1000, 1000, (10,), "/home/app")
    assert resolve_user(rootfs, "1000:10").gid == 10
    assert resolve_user(rootfs, "4242").uid == 4242
    assert resolve_user(rootfs, "app:wheel").gid == 10


@pytest.mark.parametrize("bad", ["ghost", "app:nogroup", "70000", ":", "1:99999999"])
def test_bad_users_are_refused(rootfs: Path, bad: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid user"):
        resolve_user(rootfs, bad)


@pytest.mark.parametrize(
    ("passwd", "group", "user", "what"),
    [
        ("evil:x:70000:0::/:/bin/sh\n", "", "evil", "uid 70000"),
        ("evil:x:1:4294967296::/:/bin/sh\n", "", "evil", "gid 4294967296"),
        ("evil:x:1:0::/:/bin/sh\n", "bad:x:65536:\n", "evil:bad", "gid 65536"),
        ("evil:x:-5:0::/:/bin/sh\n", "", "evil", "uid '-5' is not a number"),
        ("x:x:2:99999::/:/bin/sh\n", "", "2", "gid 99999"),
    ],
)
def test_ids_from_the_image_files_must_be_in_the_container_range(
    rootfs: Path, passwd: str, group: str, user: str, what: str
) -> None:
    """A hostile image's /etc/passwd or /etc/group cannot push an id past the tenant's range."""
    (rootfs / "etc/passwd").write_text(passwd)
    (rootfs / "etc/group").write_text(group)
    with pytest.raises(InvalidSpec, match=f"invalid user .*{what}"):
        resolve_user(rootfs, user)


@pytest.mark.parametrize("bad", ["NOEQUALS", "=v", "1A=b", "A B=c"])
def test_bad_env_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid environment variable"):
        validate_env((bad,))


def test_env_workdir_hostname_signal_validation() -> None:
    assert validate_env(("A=1", "B_2=x=y", "EMPTY=")) == ("A=1", "B_2=x=y", "EMPTY=")
    with pytest.raises(InvalidSpec, match="absolute"):
        validate_workdir("relative/dir")
    with pytest.raises(InvalidSpec, match="hostname"):
        validate_hostname("bad_host!")
    assert normalize_signal("term") == "SIGTERM"
    assert normalize_signal("9") == "SIGKILL"
    with pytest.raises(InvalidSpec, match="unknown signal"):
        normalize_signal("SIGNOPE")


def test_tenant_ranges_are_disjoint_and_stable(tmp_path: Path) -> None:
    ranges = TenantIdRanges(tmp_path)
    a, b = ranges.range_for("acme"), ranges.range_for("globex")
    assert a.base != b.base
    assert not (a.contains(b.base) or b.contains(a.base))
    assert TenantIdRanges(tmp_path).range_for("acme") == a
    with pytest.raises(InvalidSpec):
        validate_tenant("../etc")
