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
    files = sorted(p.name for p in engine.containers.files(c.id).bundle.glob("ctr.log.[0-9]*"))
    assert set(files) - {"ctr.log.0"} == {"ctr.log.1", "ctr.log.2"}  # max-file=3 kept (.0: a second name)


def test_the_lines_of_a_file_conmon_replaced_at_its_cap_are_kept(engine: Engine, busybox: Image) -> None:
    # conmon's cap (max-size x (max-file + 1)) counts what it wrote across the reopens rotations
    # ask for; at the cap it renames a new file over the log, which took the old one's lines along
    n = 1500
    c = engine.run(
        ContainerSpec(
            image="busybox",
            command=("sh", "-c", COUNTER.format(n=n, pause="usleep 1000;")),
            log=LogOptions(max_size=4096, max_files=3),
        )
    )
    log = engine.containers.log_path(c)

    def inode() -> int | None:
        try:
            return log.stat().st_ino
        except FileNotFoundError:
            return None

    replaced, rotations, after = 0, 0, inode()
    while engine.get(c.id).is_running:
        before = inode()
        if after is not None and before is not None and before != after:  # not by rotate_logs
            replaced += 1
            got = [ln.text for ln in engine.logs(c.id)]
            first = int(got[0].removeprefix("line-"))
            assert got == [f"line-{i}" for i in range(first, first + len(got))], "lines are missing"
        rotations += engine.rotate_logs()
        after = inode()
        time.sleep(0.005)
    assert rotations >= 3 and replaced >= 1, "the test must really rotate, and conmon replace"
    got = [ln.text for ln in engine.logs(c.id)]
    first = int(got[0].removeprefix("line-"))
    assert got == [f"line-{i}" for i in range(first, n)]  # only the oldest files were dropped


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
