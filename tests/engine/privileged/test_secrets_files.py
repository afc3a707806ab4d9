"""Secrets as files at /run/secrets in real containers: ownership, modes, tmpfs, no disk, no leaks."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from engine.cli import main
from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec, RuntimeFailure
from engine.images.model import Image
from engine.networks.manager import NetworkNotFound
from engine.runtime import mounts
from engine.runtime.model import ContainerSpec, ExecSpec, SecretFile
from engine.volumes.spec import MountSpec
from tests.engine.conftest import break_crun_config, create_interrupted, leaks

pytestmark = pytest.mark.privileged


def _exec(engine: Engine, cid: str, script: str, user: str | None = None) -> tuple[int, bytes]:
    proc = engine.exec(
        cid,
        ExecSpec(command=("sh", "-c", script), user=user),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, out


def _value() -> bytes:
    """A value that cannot appear anywhere by chance (binary, with a newline)."""
    return b"s3cret-" + secrets.token_hex(16).encode() + b"\n\x00\xff-end"


def _sleeper(value: bytes, **kwargs: object) -> ContainerSpec:
    spec: dict[str, object] = {
        "image": "busybox",
        "command": ("sleep", "60"),
        "tenant": "acme",
        "secrets": (SecretFile("api-key", value), SecretFile("db.password", b"pw")),
    }
    return ContainerSpec(**(spec | kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("user, other", [("1000:1000", "2000"), (None, "1000")])
def test_secret_is_a_0400_file_of_the_process_user_on_a_read_only_tmpfs(
    engine: Engine, busybox: Image, user: str | None, other: str
) -> None:
    value = _value()
    c = engine.run(_sleeper(value, user=user))
    uid = int(user.split(":")[0]) if user else 0
    assert _exec(engine, c.id, "cat /run/secrets/api-key") == (0, value)
    code, out = _exec(engine, c.id, "stat -c '%a %u %g' /run/secrets /run/secrets/api-key; ls /run/secrets")
    assert code == 0
    assert out.decode().split("\n") == [f"500 {uid} {uid}", f"400 {uid} {uid}", "api-key", "db.password", ""]
    # another (non-root) user of the same container can neither read nor list them
    code, out = _exec(engine, c.id, "cat /run/secrets/api-key; ls /run/secrets", user=other)
    assert code != 0 and out.count(b"Permission denied") == 2 and value not in out
    # a read-only, noexec tmpfs that even the container's root cannot change
    code, out = _exec(engine, c.id, "grep ' /run/secrets ' /proc/mounts")
    fields = out.decode().split()
    assert fields[2] == "tmpfs"
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(fields[3].split(","))
    code, out = _exec(
        engine,
        c.id,
        "echo x > /run/secrets/api-key; touch /run/secrets/new; rm /run/secrets/db.password",
        user="0",
    )
    assert code != 0 and out.count(b"Read-only file system") == 3
    # on the host: a tmpfs in the container's directory, files owned by the mapped ids
    directory = engine.containers.store.secrets_dir(c.id)
    assert mounts.fs_type(directory) == "tmpfs"
    st = os.stat(directory / "api-key")
    assert (st.st_uid, st.st_gid) == (c.uid_base + uid, c.uid_base + uid)
    assert stat.S_IMODE(st.st_mode) == 0o400
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o500


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    """Regular files below ``root`` on its own file system (mount points are skipped) holding ``needle``."""
    found = []
    device = os.stat(root).st_dev
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(directory, d)).st_dev == device]
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
    return found


def test_the_value_never_reaches_the_disk_or_the_records(engine: Engine, busybox: Image) -> None:
    value = _value()
    c = engine.run(_sleeper(value))
    assert _exec(engine, c.id, "cat /run/secrets/api-key")[1] == value
    engine.stop(c.id, timeout=0)
    bundle = engine.containers.store.directory(c.id)
    assert mounts.is_mountpoint(bundle / "secrets")  # skipped by the walk: it is memory
    assert _files_containing(engine.paths.root, value) == []
    assert _files_containing(engine.paths.root, b"api-key") != []  # the walk does read the records
    record = json.loads((bundle / "container.json").read_bytes())
    assert record["secrets"] == ["api-key", "db.password"]
    config = json.loads((bundle / "config.json").read_bytes())
    (mount,) = [m for m in config["mounts"] if m["destination"] == "/run/secrets"]
    assert mount["source"] == str(bundle / "secrets") and "ro" in mount["options"]
    assert config["mounts"][-1] == mount  # mounted last: no other mount can hide it


def test_engine_restart_keeps_them_and_a_lost_tmpfs_fails_start_clearly(
    engine: Engine, busybox: Image
) -> None:
    value = _value()
    c = engine.run(_sleeper(value, user="1000"))
    again = Engine(root=engine.paths.root, instance=engine.instance)  # the engine process restarted
    assert _exec(again, c.id, "cat /run/secrets/api-key") == (0, value)
    again.stop(c.id, timeout=0)
    again.start(c.id)  # a stop/start keeps the same files
    assert _exec(again, c.id, "cat /run/secrets/api-key") == (0, value)
    again.stop(c.id, timeout=0)
    mounts.unmount(again.containers.store.secrets_dir(c.id))  # what a host reboot does to a tmpfs
    with pytest.raises(
        Conflict, match=r"secrets \(api-key, db.password\) were kept only in memory.*remove it"
    ):
        again.start(c.id)
    assert again.get(c.id).status == "exited"
    again.remove(c.id)
    assert leaks(engine.paths.root, engine.instance) == []


def test_remove_unmounts_them(engine: Engine, busybox: Image) -> None:
    c = engine.run(_sleeper(_value()))
    directory = engine.containers.store.secrets_dir(c.id)
    assert mounts.is_mountpoint(directory)
    engine.remove(c.id, force=True)
    assert not mounts.is_mountpoint(directory) and not directory.exists()
    assert leaks(engine.paths.root, engine.instance) == []


def test_a_create_failing_after_the_secrets_step_leaves_nothing(
    engine: Engine, busybox: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NetworkNotFound):
        engine.create(_sleeper(_value(), name="late1", network="no-such-net"))
    assert leaks(engine.paths.root, engine.instance) == []

    break_crun_config(monkeypatch)  # crun itself refuses the bundle
    with pytest.raises(RuntimeFailure, match="could not create"):
        engine.create(_sleeper(_value(), name="late2", network="none"))
    monkeypatch.undo()
    assert leaks(engine.paths.root, engine.instance) == []
    assert not (engine.paths.names / "late2").exists()
    c = engine.run(_sleeper(b"ok\n", name="late2", network="none", command=("cat", "/run/secrets/api-key")))
    assert engine.wait(c.id, timeout=20).exit_code == 0
    assert [line.text for line in engine.logs(c.id)] == ["ok"]


def test_recover_unmounts_the_secrets_of_an_interrupted_create(
    engine: Engine, busybox: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_interrupted(engine, _sleeper(_value(), name="half"), monkeypatch)
    (bundle,) = engine.paths.containers.iterdir()
    assert mounts.fs_type(bundle / "secrets") == "tmpfs"
    removed = engine.recover()  # its create's process is gone
    assert "name half" in removed and any(r.startswith("bundle ") for r in removed)
    assert leaks(engine.paths.root, engine.instance) == []


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"secrets": (SecretFile("../etc/passwd", b"x"),)}, InvalidSpec, "invalid secret name"),
        ({"secrets": (SecretFile("..", b"x"),)}, InvalidSpec, "invalid secret name"),
        ({"secrets": (SecretFile("a", b"x"), SecretFile("a", b"y"))}, InvalidSpec, "given twice"),
        ({"secrets": (SecretFile("a", "text"),)}, InvalidSpec, "must be bytes"),  # type: ignore[arg-type]
        (
            {"mounts": (MountSpec(kind="tmpfs", target="/run/secrets", size=4096),)},
            InvalidSpec,
            "clashes with the container's secrets",
        ),
        ({"command": ("no-such-command",)}, Exception, "not found"),
        ({"image": "no-such-image"}, Exception, "no-such-image"),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing(
    engine: Engine, busybox: Image, kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        engine.create(_sleeper(b"v", name="bad", **kwargs))
    assert engine.list(all=True) == []
    assert leaks(engine.paths.root, engine.instance) == []


def test_hpctl_run_secret(
    engine: Engine, busybox: Image, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "api-key.txt"
    source.write_bytes(b"from-a-file\n")
    args = ["--root", str(engine.paths.root), "--instance", engine.instance, "run", "--rm", "--network"]
    code = main([*args, "none", "--secret", f"api-key={source}", "busybox", "cat", "/run/secrets/api-key"])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "from-a-file\n"), err
    code = main([*args, "none", "--secret", f"api-key={tmp_path}/missing", "busybox", "true"])
    out, err = capsys.readouterr()
    assert code != 0 and "cannot read" in err and "missing" in err
    code = main([*args, "none", "--secret", "just-a-name", "busybox", "true"])
    assert code != 0 and "use NAME=FILE" in capsys.readouterr().err
    assert engine.list(all=True) == []
