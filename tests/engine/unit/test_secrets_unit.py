"""Secrets as files, without root: validation, sizes, the write logic behind a fake kernel, the CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.cli.containers import parse_secret_arg
from engine.errors import Conflict, InvalidSpec, RuntimeFailure
from engine.runtime import secrets as sec
from engine.runtime.idmap import IdRange
from engine.runtime.model import ContainerSpec, SecretFile
from engine.runtime.oci_spec import BindMount, BundleSpec, ProcessSpec, build_config


class FakeKernel:
    """Mounts are a dict of paths; ``fs`` is what a "mount" reports (ext4: a mount that went wrong)."""

    def __init__(self, fs: str = "tmpfs", stuck: bool = False) -> None:
        self.mounted: dict[Path, str] = {}
        self.fs = fs
        self.stuck = stuck
        self.calls: list[tuple[str, Path, dict[str, int]]] = []

    def mount_tmpfs(self, target: Path, *, size: int, mode: int, uid: int, gid: int, max_inodes: int) -> None:
        self.calls.append(("mount", target, {"size": size, "mode": mode, "uid": uid, "gid": gid}))
        self.mounted[target] = self.fs

    def fs_type(self, path: Path) -> str | None:
        return self.mounted.get(path)

    def unmount(self, target: Path) -> None:
        self.calls.append(("unmount", target, {}))
        if not self.stuck:
            self.mounted.pop(target, None)


def test_repr_never_shows_the_value() -> None:
    secret = SecretFile("api-key", b"hunter2-value")
    spec = ContainerSpec(image="busybox", secrets=(secret,))
    assert "hunter2" not in repr(secret) and "hunter2" not in repr(spec) and "api-key" in repr(spec)
    assert "hunter2" not in str(spec)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "-dash", "sp ace", "nul\x00", "é", "a" * 129, 7],
)
def test_bad_names_are_refused_with_the_rule(name: object) -> None:
    with pytest.raises(InvalidSpec, match=r"invalid secret name.*no '/'"):
        sec.validate_secrets([SecretFile(name, b"v")])  # type: ignore[arg-type]


def test_good_names_pass_and_order_is_kept() -> None:
    given = [SecretFile("db.password", b""), SecretFile("API_KEY-2", b"x"), SecretFile("a" * 128, b"y")]
    assert sec.validate_secrets(given) == tuple(given)
    assert sec.validate_secrets([]) == ()


def test_duplicates_wrong_types_and_sizes_are_refused_without_the_value() -> None:
    with pytest.raises(InvalidSpec, match="'a' is given twice") as exc:
        sec.validate_secrets([SecretFile("a", b"one-value"), SecretFile("a", b"two-value")])
    assert "value" not in str(exc.value).replace("SecretFile", "")
    with pytest.raises(InvalidSpec, match="must be bytes, not str"):
        sec.validate_secrets([SecretFile("a", "text")])  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec, match="give SecretFile"):
        sec.validate_secrets([("a", b"x")])  # type: ignore[list-item]
    with pytest.raises(InvalidSpec, match="at most 256"):
        sec.validate_secrets([SecretFile(f"s{i}", b"") for i in range(257)])
    with pytest.raises(InvalidSpec, match="put large files in a volume"):
        sec.validate_secrets([SecretFile("big", b"x" * (sec.MAX_TOTAL_BYTES + 1))])


@pytest.mark.parametrize("target", ["/run/secrets", "/run/secrets/extra"])
def test_a_mount_on_the_secrets_directory_clashes(target: str) -> None:
    with pytest.raises(InvalidSpec, match=f"mount on {target} clashes"):
        sec.validate_secrets([SecretFile("a", b"x")], [target])
    assert sec.validate_secrets([SecretFile("a", b"x")], ["/run", "/run/secretsx"])  # these are fine


def test_tmpfs_size_counts_whole_pages_and_a_spare() -> None:
    files = [SecretFile("a", b""), SecretFile("b", b"x"), SecretFile("c", b"x" * 4097)]
    assert sec.tmpfs_size(files, page_size=4096) == (0 + 1 + 2 + 1) * 4096


def test_mount_writes_0400_files_owned_by_the_given_ids(tmp_path: Path) -> None:
    kernel = FakeKernel()
    directory = tmp_path / "secrets"
    uid, gid = os.getuid(), os.getgid()
    bind = sec.mount_secrets(
        directory,
        [SecretFile("a", b"alpha\n"), SecretFile("b", b"\x00\xff")],
        uid=uid,
        gid=gid,
        kernel=kernel,
    )
    assert kernel.calls == [("mount", directory, {"size": 3 * os.sysconf("SC_PAGE_SIZE"), "mode": 0o500,
                                                  "uid": uid, "gid": gid})]  # fmt: skip
    assert (directory / "a").read_bytes() == b"alpha\n" and (directory / "b").read_bytes() == b"\x00\xff"
    for name in ("a", "b"):
        st = os.stat(directory / name)
        assert stat.S_IMODE(st.st_mode) == 0o400 and (st.st_uid, st.st_gid) == (uid, gid)
    assert (bind.source, bind.destination, bind.read_only, bind.no_exec) == (
        str(directory),
        "/run/secrets",
        True,
        True,
    )
    sec.require_secrets("web", directory, ["a", "b"], kernel)  # present: no error
    sec.unmount_secrets(directory, kernel)
    assert not sec.secrets_present(directory, kernel)


def test_nothing_is_written_when_the_mount_is_not_a_tmpfs(tmp_path: Path) -> None:
    kernel = FakeKernel(fs="ext4")
    directory = tmp_path / "secrets"
    with pytest.raises(RuntimeFailure, match=r"not a tmpfs.*refusing to write secrets to disk"):
        sec.mount_secrets(directory, [SecretFile("a", b"v")], uid=os.getuid(), gid=os.getgid(), kernel=kernel)
    assert list(directory.iterdir()) == [] and kernel.mounted == {}


def test_a_failed_write_unmounts_again(tmp_path: Path) -> None:
    kernel = FakeKernel()
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "b").mkdir()  # stands in for a write the kernel refuses
    with pytest.raises(RuntimeFailure, match="cannot write secret 'b'"):
        sec.mount_secrets(
            directory,
            [SecretFile("a", b"v"), SecretFile("b", b"w")],
            uid=os.getuid(),
            gid=os.getgid(),
            kernel=kernel,
        )
    assert kernel.mounted == {} and kernel.calls[-1][0] == "unmount"


def test_unmount_is_fine_when_not_mounted_and_loud_when_stuck(tmp_path: Path) -> None:
    sec.unmount_secrets(tmp_path, FakeKernel())
    stuck = FakeKernel(stuck=True)
    stuck.mounted[tmp_path] = "tmpfs"
    with pytest.raises(RuntimeFailure, match="cannot unmount the secrets"):
        sec.unmount_secrets(tmp_path, stuck)


def test_lost_secrets_make_start_fail_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(Conflict, match=r"web cannot start: its secrets \(a, b\).*create it again"):
        sec.require_secrets("web", tmp_path, ["a", "b"], FakeKernel())
    sec.require_secrets("web", tmp_path, [], FakeKernel())  # no secrets: nothing to lose


def test_the_secrets_bind_is_read_only_noexec_in_config_json() -> None:
    bind = BindMount("/r/containers/x/secrets", "/run/secrets", read_only=True, no_exec=True)
    spec = BundleSpec(
        process=ProcessSpec(args=("true",), env=(), cwd="/", uid=0, gid=0),
        hostname="h",
        id_range=IdRange(100000),
        cgroups_path="/x",
        user_mounts=(bind,),
    )
    mount = build_config(spec)["mounts"][-1]
    assert mount == {
        "destination": "/run/secrets",
        "type": "bind",
        "source": "/r/containers/x/secrets",
        "options": ["rbind", "nosuid", "nodev", "noexec", "ro"],
    }


def test_cli_secret_reads_the_file(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_bytes(b"k\n")
    assert parse_secret_arg(f"api-key={f}") == SecretFile("api-key", b"k\n")
    for bad in ("api-key", "=x", "api-key="):
        with pytest.raises(InvalidSpec, match="use NAME=FILE"):
            parse_secret_arg(bad)
    with pytest.raises(InvalidSpec, match=r"--secret k: cannot read .*nope: No such file"):
        parse_secret_arg(f"k={tmp_path}/nope")
