"""`hpctl run -it`, `hpctl attach` (on a real pseudo-terminal) and `hpctl cp` against a real engine."""

from __future__ import annotations

import io
import os
import secrets
import sys
import tarfile
from pathlib import Path

import pytest

from engine.cli import main
from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec
from tests.engine.conftest import hpctl_argv
from tests.engine.terminal import Terminal, set_size

pytestmark = pytest.mark.privileged


def env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.getcwd(), "TERM": "xterm"}


def hpctl(engine: Engine, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--root", str(engine.paths.root), "--instance", engine.instance, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_it_shell_resize_and_exit_code(engine: Engine, busybox: Image) -> None:
    name = f"it-{secrets.token_hex(3)}"
    term = Terminal(
        hpctl_argv(engine, "run", "-it", "--name", name, "--network", "none", "busybox", "sh"), env()
    )
    term.read_until(b"# ")
    term.type(b"echo hi-$((6*7)); stty size\r")
    out = term.read_until(b"24 80")
    assert b"hi-42" in out
    set_size(term.master, 40, 132)
    term.read_until(b"# ")
    term.type(b"stty size\r")
    term.read_until(b"40 132")
    term.type(b"exit 4\r")
    assert term.wait() == 4
    assert engine.get(name).exit_code == 4


def test_run_it_detach_then_attach(engine: Engine, busybox: Image) -> None:
    name = f"att-{secrets.token_hex(3)}"
    term = Terminal(
        hpctl_argv(engine, "run", "-it", "--name", name, "--network", "none", "busybox", "sh"), env()
    )
    term.read_until(b"# ")
    term.type(b"\x10\x11")
    assert term.wait() == 0
    assert b"keeps running" in term.output
    assert engine.get(name).status == "running"
    term = Terminal(hpctl_argv(engine, "attach", name), env())
    term.type(b"echo back-$((5*5))\r")
    term.read_until(b"back-25")
    term.type(b"exit 6\r")
    assert term.wait() == 6


def test_run_t_without_a_terminal_is_refused(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end, "r"))
    code, _out, err = hpctl(engine, capsys, "run", "-t", "--network", "none", "busybox", "sh")
    assert code != 0 and "not a TTY" in err
    assert engine.list(all=True) == []  # nothing was created


def test_cp_both_ways_and_through_planted_links(
    engine: Engine, busybox: Image, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_dir = tmp_path / "host-secret"
    secret_dir.mkdir()
    (secret_dir / "secret").write_text("host secret\n")
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
    script = (
        f"mkdir -p /data/sub {secret_dir} && echo one > /data/sub/f && "
        f"ln -s {secret_dir} /data/evil && ln -s / /up"
    )
    assert engine.exec(container.id, ExecSpec(command=("sh", "-c", script))).wait() == 0
    ref = container.name
    assert hpctl(engine, capsys, "cp", f"{ref}:/data", str(tmp_path / "copy"))[0] == 0
    assert (tmp_path / "copy" / "sub" / "f").read_text() == "one\n"
    assert os.readlink(tmp_path / "copy" / "evil") == str(secret_dir)  # a link, as it was
    (tmp_path / "existing").mkdir()
    assert hpctl(engine, capsys, "cp", f"{ref}:/data/sub/f", str(tmp_path / "existing"))[0] == 0
    assert (tmp_path / "existing" / "f").read_text() == "one\n"
    code, _out, err = hpctl(engine, capsys, "cp", f"{ref}:/up{secret_dir}/secret", str(tmp_path / "stolen"))
    assert code != 0 and "Could not find the file" in err and not (tmp_path / "stolen").exists()
    local = tmp_path / "in.txt"
    local.write_text("to the container\n")
    assert hpctl(engine, capsys, "cp", str(local), f"{ref}:/data/renamed.txt")[0] == 0
    assert hpctl(engine, capsys, "cp", str(local), f"{ref}:/data/evil/")[0] == 0  # into the container's link
    assert hpctl(engine, capsys, "cp", str(tmp_path / "copy"), f"{ref}:/data/sub")[0] == 0
    check = engine.exec(
        container.id,
        ExecSpec(
            command=(
                "sh",
                "-c",
                f"cat /data/renamed.txt {secret_dir}/in.txt /data/sub/copy/sub/f; "
                "stat -c %u /data/renamed.txt",
            )
        ),
        stdout=-1,
    )
    assert check.communicate(timeout=30)[0] == b"to the container\nto the container\none\n0\n"
    assert sorted(p.name for p in secret_dir.iterdir()) == ["secret"]  # the host directory is untouched
    code, _out, err = hpctl(engine, capsys, "cp", "a", "b")
    assert code != 0 and "one side is CONTAINER:PATH" in err


def test_cp_tar_streams(engine: Engine, busybox: Image, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
    code = main(
        [
            "--root",
            str(engine.paths.root),
            "--instance",
            engine.instance,
            "cp",
            f"{container.id}:/etc/passwd",
            "-",
        ]
    )
    assert code == 0
    with tarfile.open(fileobj=io.BytesIO(capfdbinary.readouterr().out)) as tar:
        assert tar.getnames() == ["passwd"]


def test_exec_it_on_its_own_terminal_follows_the_window(engine: Engine, busybox: Image) -> None:
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600"), network="none"))
    term = Terminal(hpctl_argv(engine, "exec", "-it", container.name, "sh"), env())
    term.read_until(b"# ")
    term.type(b"tty; stty size\r")
    out = term.read_until(b"24 80")
    assert b"/dev/pts/" in out
    set_size(term.master, 50, 160)
    term.read_until(b"# ")
    term.type(b"stty size\r")
    term.read_until(b"50 160")
    term.type(b"exit 7\r")
    assert term.wait() == 7
    assert engine.get(container.id).status == "running"


def test_run_i_with_piped_input(engine: Engine, busybox: Image) -> None:
    import subprocess

    result = subprocess.run(
        hpctl_argv(
            engine, "run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c", "tr a-z A-Z; exit 3"
        ),
        input=b"piped in\n",
        capture_output=True,
        env=env(),
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (3, b"PIPED IN\n"), result.stderr
    assert engine.list(all=True) == []
