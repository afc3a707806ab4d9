"""Container logs through conmon: streams, tail, follow, and rotation while following."""

from __future__ import annotations

import threading
import time

import pytest

from engine.cli import main as hpctl
from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, LogOptions

pytestmark = pytest.mark.privileged

COUNTER = "i=0; while [ $i -lt {n} ]; do echo line-$i; i=$((i+1)); {pause} done"


def test_follow_across_rotation_loses_and_repeats_nothing(engine: Engine, busybox: Image) -> None:
    n = 400
    c = engine.run(
        ContainerSpec(
            image="busybox",
            command=("sh", "-c", "sleep 0.3; " + COUNTER.format(n=n, pause="usleep 2000;")),
            log=LogOptions(max_size=4096, max_files=3),
        )
    )
    stop = threading.Event()
    rotations = []

    def rotator() -> None:
        while not stop.is_set():
            rotations.append(engine.rotate_logs())
            time.sleep(0.02)

    t = threading.Thread(target=rotator)
    t.start()
    try:
        got = [ln.text for ln in engine.logs(c.id, follow=True)]
    finally:
        stop.set()
        t.join()
    assert sum(rotations) >= 3, "the test must really rotate while following"
    assert got == [f"line-{i}" for i in range(n)]
    files = sorted(p.name for p in engine.containers.files(c.id).bundle.glob("ctr.log*"))
    assert files == ["ctr.log", "ctr.log.1", "ctr.log.2"]  # max-file=3 kept


def test_cli_logs_tail_timestamps_and_streams(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(engine.paths.root), "--instance", engine.instance]
    code = hpctl(
        [*root, "run", "--name", "talker", "busybox", "sh", "-c", "echo a; echo b >&2; echo c; exit 2"]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert out == "a\nc\n" and err == "b\n"
    assert hpctl([*root, "logs", "--tail", "1", "talker"]) == 0
    tail = capsys.readouterr()
    assert len((tail.out + tail.err).splitlines()) == 1
    assert hpctl([*root, "logs", "-t", "talker"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(" a") and first[:4].isdigit() and "T" in first.split()[0]


def test_cli_run_rm_removes_and_returns_exit_code(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(engine.paths.root), "--instance", engine.instance]
    assert hpctl([*root, "run", "--rm", "busybox", "sh", "-c", "echo bye; exit 42"]) == 42
    assert capsys.readouterr().out == "bye\n"
    assert engine.list(all=True) == []
    assert hpctl([*root, "run", "--rm", "busybox", "no-such-command"]) == 127
    assert "not found" in capsys.readouterr().err
    assert engine.list(all=True) == []


def test_cli_ps_inspect_stop_rm(engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]) -> None:
    root = ["--root", str(engine.paths.root), "--instance", engine.instance]
    assert hpctl([*root, "run", "-d", "--name", "svc", "--tenant", "acme", "busybox", "sleep", "30"]) == 0
    cid = capsys.readouterr().out.strip()
    assert len(cid) == 64
    assert hpctl([*root, "ps"]) == 0
    table = capsys.readouterr().out
    assert "svc" in table and "Up " in table and "acme" in table
    assert hpctl([*root, "exec", "svc", "sh", "-c", "exit 3"]) == 3
    assert hpctl([*root, "stop", "-t", "0", "svc"]) == 0
    assert hpctl([*root, "ps"]) == 0
    assert "svc" not in capsys.readouterr().out.split("NAMES", 1)[1]
    assert hpctl([*root, "ps", "-a"]) == 0
    assert "Exited (137)" in capsys.readouterr().out
    assert hpctl([*root, "rm", "svc"]) == 0
    assert hpctl([*root, "inspect", "svc"]) != 0
    assert "no such container" in capsys.readouterr().err


def test_output_without_final_newline_is_shown(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(engine.paths.root), "--instance", engine.instance]
    assert hpctl([*root, "run", "--name", "printer", "busybox", "sh", "-c", "echo first; printf ok"]) == 0
    assert capsys.readouterr().out == "first\nok\n"
    assert [ln.text for ln in engine.logs("printer")] == ["first", "ok"]
    assert [ln.text for ln in engine.logs("printer", tail=1)] == ["ok"]
    assert [ln.text for ln in engine.logs("printer", follow=True)] == ["first", "ok"]
