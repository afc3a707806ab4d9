"""Parsing and validation of volumes, tmpfs and bind mounts, and their OCI mounts (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.cli.containers import parse_size, spec_from_args
from engine.cli.volumes import mounts_from_args, parse_tmpfs_arg, parse_volume_arg
from engine.errors import InvalidSpec
from engine.runtime.idmap import IdRange
from engine.runtime.oci_spec import BindMount, BundleSpec, ProcessSpec, TmpfsMount, build_config
from engine.volumes.spec import (
    MountSpec,
    validate_mounts,
    validate_target,
    validate_volume_name,
    validate_volume_size,
    validate_volume_target,
)

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("data:/data", MountSpec(kind="volume", source="data", target="/data")),
        ("data:/data:ro", MountSpec(kind="volume", source="data", target="/data", read_only=True)),
        ("data:/data:rw", MountSpec(kind="volume", source="data", target="/data")),
        ("my_vol.1-x:/srv/app/", MountSpec(kind="volume", source="my_vol.1-x", target="/srv/app")),
        ("/srv/www:/www:ro", MountSpec(kind="bind", source="/srv/www", target="/www", read_only=True)),
        ("/srv//www/:/www", MountSpec(kind="bind", source="/srv/www", target="/www")),
    ],
)
def test_volume_arg_forms(arg: str, expected: MountSpec) -> None:
    assert parse_volume_arg(arg) == expected


@pytest.mark.parametrize(
    "arg, words",
    [
        ("/data", "anonymous"),
        ("data", "anonymous"),
        ("data:/data:rx", "'ro' or 'rw'"),
        ("a:b:c:d", "NAME:/path"),
        (":/data", "empty"),
        ("data:relative", "absolute"),
        ("data:/", "root"),
        ("data:/proc/x", "runtime"),
        ("data:/sys", "runtime"),
        ("data:/dev/shm", "runtime"),
        ("data:/a/../b", "'..'"),
        ("./here:/data", "relative"),
        ("../up:/data", "relative"),
        ("a/b:/data", "invalid volume name"),
        ("a..b:/data", "invalid volume name"),
        ("-x:/data", "invalid volume name"),
        ("x" * 129 + ":/data", "invalid volume name"),
    ],
)
def test_bad_volume_args(arg: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words.replace(".", r"\.").replace("(", r"\(")):
        parse_volume_arg(arg)


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("/run:size=16m", MountSpec(kind="tmpfs", target="/run", size=16 * MIB)),
        ("/run:size=16m,mode=1777", MountSpec(kind="tmpfs", target="/run", size=16 * MIB, mode=0o1777)),
        (
            "/t:mode=700,size=4096,ro",
            MountSpec(kind="tmpfs", target="/t", size=4096, mode=0o700, read_only=True),
        ),
        ("/t/:size=1g,rw", MountSpec(kind="tmpfs", target="/t", size=1024**3)),
    ],
)
def test_tmpfs_arg_forms(arg: str, expected: MountSpec) -> None:
    assert parse_tmpfs_arg(arg) == expected


@pytest.mark.parametrize(
    "arg, words",
    [
        ("/run", "needs a size"),
        ("/run:mode=1777", "needs a size"),
        ("/run:size=", "invalid size"),
        ("/run:size=-1m", "invalid size"),
        ("/run:size=10x", "invalid size"),
        ("/run:size=0", "more than 0"),
        ("/run:size=1m,mode=999", "octal"),
        ("/run:size=1m,mode=17777", "octal"),
        ("/run:size=1m,exec", "unknown|invalid --tmpfs option"),
        ("run:size=1m", "absolute"),
        ("/proc:size=1m", "runtime"),
    ],
)
def test_bad_tmpfs_args(arg: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        parse_tmpfs_arg(arg)


@pytest.mark.parametrize(
    "text, value",
    [
        ("4096", 4096),
        ("512k", 512 * 1024),
        ("16m", 16 * MIB),
        ("1g", 1024**3),
        ("2GB", 2 * 1024**3),
        ("1b", 1),
    ],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1g", "1.5g", "1t", "ten", "1 g", "0x10", "1gg"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("name", ["data", "a", "A.b_c-1", "x" * 128])
def test_good_volume_names(name: str) -> None:
    assert validate_volume_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "..", "a..b", ".hidden", "-x", "_x", "x" * 129, "a b", "é"])
def test_bad_volume_names(name: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid volume name"):
        validate_volume_name(name)


@pytest.mark.parametrize("size", [-1, 0, 1, 4 * MIB - 1, 17 * 1024**4, 2**70, True])
def test_bad_volume_sizes(size: int) -> None:
    with pytest.raises(InvalidSpec, match="invalid volume size"):
        validate_volume_size(size)


def test_volume_size_larger_than_the_host_disk() -> None:
    assert validate_volume_size(64 * MIB, fs_total=128 * MIB) == 64 * MIB
    with pytest.raises(InvalidSpec, match="larger than the host file system"):
        validate_volume_size(256 * MIB, fs_total=128 * MIB)


def test_validate_mounts_normalizes_and_checks(tmp_path: Path) -> None:
    mounts = (
        MountSpec(kind="volume", source="v", target="/data/"),
        MountSpec(kind="tmpfs", target="/run", size=MIB),
        MountSpec(kind="bind", source=str(tmp_path), target="/host"),
    )
    checked = validate_mounts(mounts, allow_host_paths=True, max_tmpfs=16 * MIB)
    assert [m.target for m in checked] == ["/data", "/run", "/host"]
    with pytest.raises(InvalidSpec, match="operator"):
        validate_mounts(mounts, allow_host_paths=False)
    with pytest.raises(InvalidSpec, match="does not exist"):
        validate_mounts([MountSpec(kind="bind", source="/no/such", target="/x")], allow_host_paths=True)
    with pytest.raises(InvalidSpec, match="absolute host path"):
        validate_mounts([MountSpec(kind="bind", source="rel", target="/x")], allow_host_paths=True)
    with pytest.raises(InvalidSpec, match="needs a size"):
        validate_mounts([MountSpec(kind="tmpfs", target="/t")], allow_host_paths=False)
    with pytest.raises(InvalidSpec, match="memory"):
        validate_mounts(
            [MountSpec(kind="tmpfs", target="/t", size=32 * MIB)], allow_host_paths=False, max_tmpfs=MIB
        )
    with pytest.raises(InvalidSpec, match="mounted once"):
        validate_mounts(
            [
                MountSpec(kind="volume", source="a", target="/d"),
                MountSpec(kind="volume", source="b", target="/d/"),
            ],
            allow_host_paths=False,
        )
    with pytest.raises(InvalidSpec, match="kind"):
        validate_mounts([MountSpec(kind="nfs", target="/d")], allow_host_paths=False)
    assert validate_target("/a//b/") == "/a/b"


@pytest.mark.parametrize(
    "target",
    [
        "//proc",
        "///sys/fs",
        "/./dev",
        "/proc/sys",
        "/",
        "//",
        "data",
        "",
        "/a/../etc",
        "/run/secrets",
        "/etc/hosts",
    ],
)
def test_a_volume_cannot_cover_what_the_runtime_owns(target: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid mount target"):
        validate_volume_target(target)
    with pytest.raises(InvalidSpec, match="invalid mount target"):
        validate_mounts([MountSpec(kind="volume", source="v", target=target)], allow_host_paths=False)


def test_a_volume_may_go_beside_what_the_runtime_owns() -> None:
    assert validate_volume_target("/run/secrets-cache/") == "/run/secrets-cache"
    assert validate_volume_target("/etc/hosts.d") == "/etc/hosts.d"
    assert validate_volume_target("/procedures") == "/procedures"


def test_run_options_build_the_spec() -> None:
    args = build_parser().parse_args(
        ["run", "-v", "data:/data:ro", "-v", "/srv:/srv", "--tmpfs", "/run:size=16m", "busybox", "true"]
    )
    spec = spec_from_args(args)
    assert spec.mounts == (
        MountSpec(kind="volume", source="data", target="/data", read_only=True),
        MountSpec(kind="bind", source="/srv", target="/srv"),
        MountSpec(kind="tmpfs", target="/run", size=16 * MIB),
    )
    assert spec.allow_privileged  # the operator's CLI may bind host paths
    assert mounts_from_args([], []) == ()


def test_oci_mounts_come_after_the_runtimes_in_the_given_order() -> None:
    spec = BundleSpec(
        process=ProcessSpec(args=("true",), env=(), cwd="/", uid=0, gid=0),
        hostname="h",
        id_range=IdRange(100000),
        cgroups_path="/x",
        user_mounts=(
            BindMount("/vol/_data", "/data", read_only=False),
            TmpfsMount("/data/tmp", 16 * MIB, 0o700),
            BindMount("/vol2/_data", "/ro", read_only=True),
            TmpfsMount("/run", 1024),
        ),
    )
    mounts = build_config(spec)["mounts"]
    assert [m["destination"] for m in mounts[-4:]] == ["/data", "/data/tmp", "/ro", "/run"]
    assert mounts[-4] == {
        "destination": "/data",
        "type": "bind",
        "source": "/vol/_data",
        "options": ["rbind", "nosuid", "nodev", "rw"],
    }
    assert mounts[-3]["type"] == "tmpfs"
    assert mounts[-3]["options"] == ["nosuid", "nodev", "mode=700", f"size={16 * MIB}", "rw"]
    assert "ro" in mounts[-2]["options"]
    assert "mode=1777" in mounts[-1]["options"]


def test_mount_spec_round_trips_through_a_record() -> None:
    m = MountSpec(kind="tmpfs", target="/t", size=5, mode=0o755, read_only=True)
    assert MountSpec.from_dict({**m.to_dict(), "future": 1}) == m
