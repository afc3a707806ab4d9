"""pause/unpause, rename, top and the event journal with real containers through crun."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.engine import Engine
from engine.errors import Conflict, InvalidSpec
from engine.events import EventFilter
from engine.images.model import Image
from engine.networks.ports import parse_publish
from engine.runtime.model import Container, ContainerSpec, ExecSpec
from tests.engine.conftest import hpctl_argv
from tests.stack import free_port

pytestmark = pytest.mark.privileged

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done"


def _counter(engine: Engine, c: Container) -> int:
    path = engine.containers.store.directory(c.id) / "rootfs" / "tmp" / "n"
    for _ in range(500):
        text = path.read_text().strip() if path.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.01)  # between the shell's truncate and its write
    raise AssertionError("the counter never appeared")


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _freezer_state(engine: Engine, c: Container) -> str:
    for root in engine.containers._cgroup_roots():
        directory = root / c.cgroup_path.lstrip("/")
        for name in ("freezer.state", "cgroup.freeze"):
            if (directory / name).exists():
                return (directory / name).read_text().strip()
    raise AssertionError("no freezer file")


def test_pause_freezes_the_processes_and_unpause_resumes(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", COUNTER)))
    start = _counter(engine, c)
    _wait_for(lambda: _counter(engine, c) > start)
    assert engine.pause(c.id).status == "paused"
    assert engine.get(c.id).status == "paused"
    assert _freezer_state(engine, c) in ("FROZEN", "1")
    frozen = _counter(engine, c)
    time.sleep(0.5)  # 25 loop turns if it still ran
    assert _counter(engine, c) == frozen
    assert [x.id for x in engine.list()] == [c.id]  # a paused container is still listed as running
    with pytest.raises(Conflict, match="already paused"):
        engine.pause(c.id)
    with pytest.raises(Conflict, match="paused; unpause it first"):
        engine.exec(c.id, ExecSpec(command=("true",)))
    with pytest.raises(Conflict, match="already running"):
        engine.start(c.id)
    assert engine.unpause(c.id).status == "running"
    _wait_for(lambda: _counter(engine, c) > frozen)
    with pytest.raises(Conflict, match="not paused"):
        engine.unpause(c.id)
    engine.remove(c.id, force=True)


def test_stop_kill_and_rm_of_a_paused_container(engine: Engine, busybox: Image) -> None:
    stopped = engine.run(ContainerSpec(image="busybox", command=("sleep", "300")))
    engine.pause(stopped.id)
    final = engine.stop(stopped.id, timeout=1)
    assert (final.status, final.exit_code) == ("exited", 137)  # PID 1 ignores SIGTERM: then SIGKILL
    killed = engine.run(ContainerSpec(image="busybox", command=("sleep", "300")))
    engine.pause(killed.id)
    engine.kill(killed.id, "SIGKILL")
    assert engine.wait(killed.id, timeout=20).exit_code == 137
    removed = engine.run(ContainerSpec(image="busybox", command=("sleep", "300")))
    engine.pause(removed.id)
    engine.remove(removed.id, force=True)
    assert {c.id: c.status for c in engine.list(all=True)} == {stopped.id: "exited", killed.id: "exited"}
    assert removed.id not in [c.id for c in engine.list(all=True)]


def test_pause_of_a_stopped_container_is_a_conflict(engine: Engine, busybox: Image) -> None:
    c = engine.create(ContainerSpec(image="busybox", command=("true",)))
    with pytest.raises(Conflict, match="not running"):
        engine.pause(c.id)


def test_rename_keeps_names_unique_and_moves_the_hosts_entry(engine: Engine, busybox: Image) -> None:
    a = engine.run(ContainerSpec(image="busybox", command=("sleep", "300"), name="alpha", network="bridge"))
    b = engine.run(ContainerSpec(image="busybox", command=("sleep", "300"), name="beta", network="bridge"))
    with pytest.raises(Conflict, match="'beta' is already in use"):
        engine.rename("alpha", "beta")
    with pytest.raises(InvalidSpec, match="invalid container name"):
        engine.rename("alpha", "../etc")
    assert engine.get(a.id).name == "alpha" and engine.get(b.id).name == "beta"
    engine.rename("alpha", "gamma")
    assert engine.get("gamma").id == a.id
    with pytest.raises(Exception, match="no such container"):
        engine.get("alpha")
    proc = engine.exec(b.id, ExecSpec(command=("cat", "/etc/hosts")), stdout=subprocess.PIPE)
    hosts = proc.communicate(timeout=20)[0].decode()
    assert "gamma" in hosts and "alpha" not in hosts
    # the old name is free again
    again = engine.create(ContainerSpec(image="busybox", command=("true",), name="alpha"))
    assert engine.get("alpha").id == again.id


def test_top_lists_the_containers_processes_only(engine: Engine, busybox: Image) -> None:
    a = engine.run(ContainerSpec(image="busybox", command=("sleep", "1234")))
    b = engine.run(ContainerSpec(image="busybox", command=("sleep", "5678")))
    rows = engine.top(a.id)
    assert [r.cmd for r in rows] == ["sleep 1234"]
    (row,) = rows
    assert row.pid == engine.get(a.id).pid  # the host's pid, as dockerd shows it
    assert row.uid == str(engine.get(a.id).uid_base)  # root inside is the tenant's uid outside
    assert row.pid != engine.get(b.id).pid and row.pid != os.getpid()
    proc = engine.exec(a.id, ExecSpec(command=("sleep", "77")))
    try:
        _wait_for(lambda: "sleep 77" in [r.cmd for r in engine.top(a.id)])
        assert sorted(r.cmd for r in engine.top(a.id)) == ["sleep 1234", "sleep 77"]
        assert [r.cmd for r in engine.top(b.id)] == ["sleep 5678"]
    finally:
        proc.kill()
        proc.wait()
    engine.stop(a.id, timeout=0)
    with pytest.raises(Conflict, match="not running"):
        engine.top(a.id)


def _actions(engine: Engine, cid: str) -> list[str]:
    return [e.action for e in engine.events(EventFilter.from_args([f"container={cid}", "type=container"]))]


def test_lifecycle_events_and_one_die_whoever_notices(engine: Engine, busybox: Image) -> None:
    c = engine.run(
        ContainerSpec(image="busybox", command=("sh", "-c", "exit 3"), name="ev", labels={"a": "b"})
    )
    engine.wait(c.id, timeout=20)
    for _ in range(3):  # other processes look too: every one refreshes, one records the exit
        subprocess.run(
            [*hpctl_argv(engine), "ps", "-a"],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
        )
        engine.list(all=True)
    engine.start(c.id)  # a second run dies again: a second die
    engine.wait(c.id, timeout=20)
    engine.remove(c.id)
    events = list(engine.events(EventFilter.from_args([f"container={c.id}"])))
    assert [e.action for e in events] == ["create", "start", "die", "start", "die", "destroy"]
    die = events[2]
    assert die.attributes == {"a": "b", "name": "ev", "image": "busybox", "exitCode": "3"}
    assert die.tenant == "default"


def test_events_of_exec_kill_stop_and_networks(engine: Engine, busybox: Image) -> None:
    trap = "trap 'exit 0' TERM; while true; do sleep 0.05; done"
    c = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", trap), network="bridge"))
    engine.exec(c.id, ExecSpec(command=("true",))).wait()
    engine.stop(c.id, timeout=5)
    acts = _actions(engine, c.id)
    assert acts[:4] == ["create", "start", "exec_create: true", "exec_start: true"]
    assert acts[4:] == ["kill", "die", "stop"]
    kill = next(e for e in engine.events() if e.action == "kill")
    assert kill.attributes["signal"] == "15"
    net = [e for e in engine.events(EventFilter.from_args(["type=network"]))]
    assert [e.action for e in net] == ["create", "connect"]
    assert net[1].attributes["container"] == c.id
    engine.remove(c.id)
    assert [e.action for e in engine.events(EventFilter.from_args(["type=network"]))][-1] == "disconnect"


def test_a_tenant_never_reads_another_tenants_events(engine: Engine, busybox: Image) -> None:
    ours = engine.run(ContainerSpec(image="busybox", command=("true",), tenant="acme", name="web"))
    theirs = engine.run(ContainerSpec(image="busybox", command=("true",), tenant="globex", name="db"))
    engine.volume_create("globex-data", tenant="globex")
    engine.volume_remove("globex-data")
    engine.wait(ours.id, timeout=20)
    engine.wait(theirs.id, timeout=20)
    seen = list(engine.events(tenant="acme"))
    assert {e.id for e in seen} == {ours.id}
    assert {e.tenant for e in seen} == {"acme"}
    # whatever the filter names, the tenant term wins; the operator sees everything
    for asked in ([f"container={theirs.id}"], ["container=db", "type=container"], ["volume=globex-data"]):
        assert list(engine.events(EventFilter.from_args(asked), tenant="acme")) == []
        assert {e.tenant for e in engine.events(EventFilter.from_args(asked))} == {"globex"}


def test_hpctl_events_follows_what_another_process_does(engine: Engine, busybox: Image) -> None:
    until = time.time() + 60
    cmd = hpctl_argv(engine)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    reader = subprocess.Popen(
        [*cmd, "events", "--since", str(time.time() - 1), "--until", f"{until:.3f}", "--filter", "event=die"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        c = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", "exit 7"), name="followed"))
        engine.wait(c.id, timeout=20)
        assert reader.stdout is not None
        line = reader.stdout.readline()
        assert f"container die {c.id} (" in line and "exitCode=7" in line and "name=followed" in line
    finally:
        reader.kill()
        reader.wait()


def _cli(engine: Engine, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--root", str(engine.paths.root), "--instance", engine.instance, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_hpctl_pause_unpause_rename_top_port_version(
    engine: Engine, busybox: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    c = engine.run(
        ContainerSpec(
            image="busybox",
            command=("sleep", "4321"),
            name="cli",
            network="bridge",
            ports=(parse_publish(f"127.0.0.1:{port}:80"),),
        )
    )
    assert _cli(engine, capsys, "pause", "cli") == (0, "cli\n", "")
    assert engine.get(c.id).status == "paused"
    assert "(Paused)" in _cli(engine, capsys, "ps")[1]  # listed (running, frozen), as docker ps shows it
    assert _cli(engine, capsys, "unpause", "cli") == (0, "cli\n", "")
    code, _, err = _cli(engine, capsys, "unpause", "cli")
    assert (code, err) == (125, "hpctl: container cli is not paused\n")
    assert _cli(engine, capsys, "rename", "cli", "cli2")[0] == 0
    assert engine.get(c.id).name == "cli2"
    code, out, _ = _cli(engine, capsys, "top", "cli2")
    header, *rows = out.splitlines()
    assert header.split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(rows) == 1 and rows[0].split()[1] == str(engine.get(c.id).pid)
    assert rows[0].endswith("sleep 4321")
    assert _cli(engine, capsys, "port", "cli2") == (0, f"80/tcp -> 127.0.0.1:{port}\n", "")
    assert _cli(engine, capsys, "port", "cli2", "80") == (0, f"127.0.0.1:{port}\n", "")
    code, _, err = _cli(engine, capsys, "port", "cli2", "81/tcp")
    assert code == 125 and "no public port '81/tcp'" in err
    code, out, _ = _cli(engine, capsys, "version")
    assert code == 0 and "Client:" in out and "Engine:" in out and "API version:" in out and "1.44" in out


def test_a_purged_tenants_events_are_not_a_new_tenants_of_that_name(engine: Engine, busybox: Image) -> None:
    old = engine.run(
        ContainerSpec(image="busybox", command=("true",), tenant="reborn", name="secret-project")
    )
    engine.wait(old.id, timeout=20)
    engine.purge_tenant("reborn")
    new = engine.run(ContainerSpec(image="busybox", command=("true",), tenant="reborn"))
    engine.wait(new.id, timeout=20)
    assert {e.id for e in engine.events(tenant="reborn")} == {new.id}
    assert old.id in {e.id for e in engine.events()}  # the operator still has the history
