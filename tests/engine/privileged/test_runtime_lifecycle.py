"""Real containers through crun and conmon: output, exit codes, lifecycle, state on disk."""

from __future__ import annotations

import subprocess
import time

import pytest

from engine.engine import Engine
from engine.errors import (
    CommandNotFound,
    Conflict,
    ContainerNotFound,
    ImageNotFound,
    InvalidSpec,
    RuntimeFailure,
)
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec
from tests.engine.conftest import break_crun_config, create_interrupted

pytestmark = pytest.mark.privileged


def run_output(engine: Engine, *cmd: str, **kw: object) -> tuple[int, str, str]:
    """Run a busybox container to the end; return its exit code, stdout and stderr."""
    c = engine.run(ContainerSpec(image="busybox", command=cmd, **kw))  # type: ignore[arg-type]
    final = engine.wait(c.id, timeout=30)
    lines = list(engine.logs(c.id))
    engine.remove(c.id)
    out = "".join(ln.text + "\n" for ln in lines if ln.stream == "stdout")
    err = "".join(ln.text + "\n" for ln in lines if ln.stream == "stderr")
    assert final.exit_code is not None
    return final.exit_code, out, err


def test_output_and_exit_codes(engine: Engine, busybox: Image) -> None:
    assert run_output(engine, "sh", "-c", "echo hello; echo oops >&2; exit 3") == (3, "hello\n", "oops\n")
    assert run_output(engine, "true")[0] == 0


def test_env_workdir_and_user(engine: Engine, busybox: Image) -> None:
    code, out, _ = run_output(
        engine,
        "sh",
        "-c",
        'echo "$GREETING $HOSTNAME"; pwd; id -u; id -g',
        env=("GREETING=hi",),
        workdir="/srv/app",
        user="1234:5678",
        hostname="web1",
    )
    assert code == 0
    assert out.splitlines() == ["hi web1", "/srv/app", "1234", "5678"]


def test_user_by_name_from_the_image(engine: Engine, busybox: Image) -> None:
    code, out, _ = run_output(engine, "id", "-un", user="nobody")
    assert (code, out) == (0, "nobody\n")


def test_missing_command_is_127_and_leaves_nothing(engine: Engine, busybox: Image) -> None:
    with pytest.raises(CommandNotFound, match="not found") as info:
        engine.run(ContainerSpec(image="busybox", command=("no-such-binary",), name="ghost"))
    assert info.value.exit_code == 127
    assert engine.list(all=True) == []
    # the name was released
    engine.run(ContainerSpec(image="busybox", command=("true",), name="ghost"))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"image": "nope:1"}, ImageNotFound, "nope"),
        ({"env": ("BAD",)}, InvalidSpec, "environment"),
        ({"user": "ghost"}, InvalidSpec, "ghost"),
        ({"workdir": "rel/dir"}, InvalidSpec, "absolute"),
        ({"image": "Bad Ref!"}, InvalidSpec, "Bad Ref"),
        ({"tenant": "../x"}, InvalidSpec, "tenant"),
    ],
)
def test_bad_input_gives_clear_error_and_leaves_nothing(
    engine: Engine, busybox: Image, kwargs: dict[str, object], error: type, words: str
) -> None:
    spec = {"image": "busybox", "command": ("true",), **kwargs}
    with pytest.raises(error, match=words):
        engine.run(ContainerSpec(**spec))  # type: ignore[arg-type]
    assert engine.list(all=True) == []


def test_duplicate_name_is_refused(engine: Engine, busybox: Image) -> None:
    engine.create(ContainerSpec(image="busybox", command=("true",), name="web"))
    with pytest.raises(Conflict, match="already in use"):
        engine.create(ContainerSpec(image="busybox", command=("true",), name="web"))
    assert len(engine.list(all=True)) == 1


def test_stop_kills_a_process_that_ignores_sigterm(engine: Engine, busybox: Image) -> None:
    c = engine.run(
        ContainerSpec(image="busybox", command=("sh", "-c", "trap '' TERM; while :; do sleep 1; done"))
    )
    assert engine.get(c.id).status == "running"
    started = time.monotonic()
    final = engine.stop(c.id, timeout=1)
    assert final.status == "exited"
    assert final.exit_code == 137  # SIGKILL, after the timeout
    assert time.monotonic() - started >= 1


def test_stop_with_sigterm_handled(engine: Engine, busybox: Image) -> None:
    c = engine.run(
        ContainerSpec(
            image="busybox",
            init=True,
            command=("sh", "-c", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"),
        )
    )
    time.sleep(0.3)
    final = engine.stop(c.id, timeout=10)
    assert final.exit_code == 0
    assert "bye" in [ln.text for ln in engine.logs(c.id)]


ORPHAN_SCRIPT = (
    "z=0; r=0; for s in /proc/[0-9]*/status; do "
    "grep -q '^State:.Z' $s && z=$((z+1)); "
    "done; "
    "for c in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $c | grep -qx 'sleep 0.2 ' && r=$((r+1)); done; "
    "echo $z $r"
)


def _zombies_and_running_orphans(engine: Engine, cid: str) -> tuple[int, int]:
    proc = engine.exec(cid, ExecSpec(command=("sh", "-c", ORPHAN_SCRIPT)), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    zombies, running = out.split()
    return int(zombies), int(running)


@pytest.mark.parametrize("init", [False, True])
def test_init_reaps_zombies(engine: Engine, busybox: Image, init: bool) -> None:
    # The orphaned `sleep 0.2` is re-parented to PID 1; `sleep 30` as PID 1 never reaps it.
    c = engine.run(
        ContainerSpec(image="busybox", init=init, command=("sh", "-c", "(sleep 0.2 &); exec sleep 30"))
    )
    deadline = time.monotonic() + 15
    zombies, running = _zombies_and_running_orphans(engine, c.id)
    while time.monotonic() < deadline and (running or zombies != (0 if init else 1)):
        time.sleep(0.2)  # wait until the orphan has exited (and, with init, been reaped)
        zombies, running = _zombies_and_running_orphans(engine, c.id)
    assert running == 0, "the orphan never finished"
    assert zombies == (0 if init else 1)
    engine.remove(c.id, force=True)


def test_state_survives_engine_restart_and_unwatched_exit(engine: Engine, busybox: Image) -> None:
    short = engine.run(
        ContainerSpec(image="busybox", command=("sh", "-c", "sleep 0.3; exit 7"), name="short")
    )
    long = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), name="long"))
    time.sleep(1.0)  # nobody watches `short` exit
    fresh = Engine(root=engine.paths.root, instance=engine.instance)
    by_name = {c.name: c for c in fresh.list(all=True)}
    assert by_name["short"].status == "exited" and by_name["short"].exit_code == 7
    assert by_name["long"].status == "running"
    assert fresh.get(long.id).pid == long.pid
    assert fresh.stop("long", timeout=1).status == "exited"
    assert short.id in {c.id for c in fresh.list(all=True)}


def test_restart_keeps_the_container_filesystem(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", "echo run >> /state; sleep 30")))
    time.sleep(0.3)
    engine.restart(c.id, timeout=0)
    time.sleep(0.3)
    proc = engine.exec(c.id, ExecSpec(command=("cat", "/state")), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=10)
    assert out.decode().split() == ["run", "run"]
    assert engine.get(c.id).status == "running"


def test_rm_of_running_container_needs_force(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "30")))
    with pytest.raises(Conflict, match="running"):
        engine.remove(c.id)
    engine.remove(c.id, force=True)
    with pytest.raises(ContainerNotFound):
        engine.get(c.id)


def test_exec_env_user_and_exit_code(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), env=("BASE=1",)))
    proc = engine.exec(
        c.id,
        ExecSpec(command=("sh", "-c", 'echo "$BASE $EXTRA"; id -u; exit 5'), env=("EXTRA=2",), user="99"),
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 5
    assert out.decode().split("\n")[:2] == ["1 2", "99"]


def test_fifty_create_remove_cycles_leave_nothing(engine: Engine, busybox: Image) -> None:
    for i in range(50):
        c = engine.create(ContainerSpec(image="busybox", command=("true",), name=f"c{i}"))
        if i % 2:
            engine.start(c.id)
            engine.wait(c.id, timeout=10)
        engine.remove(c.id, force=True)
    # the engine fixture asserts no mount, cgroup, crun state, conmon or directory is left
    assert engine.list(all=True) == []


def test_runtime_failure_during_create_leaves_nothing(
    engine: Engine, busybox: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_crun_config(monkeypatch)
    with pytest.raises(RuntimeFailure, match="could not create"):
        engine.run(ContainerSpec(image="busybox", command=("true",), name="broken"))
    assert engine.list(all=True) == []
    assert not (engine.paths.names / "broken").exists()
    # the engine fixture then checks: no mount, cgroup, crun state or conmon left


def test_two_containers_share_one_unpacked_image(engine: Engine, busybox: Image) -> None:
    a = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), tenant="acme"))
    b = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), tenant="acme"))
    layer_dirs = [
        p for p in engine.paths.layers.rglob("*") if p.is_dir() and p.parent.parent == engine.paths.layers
    ]
    assert len(layer_dirs) == 1, layer_dirs  # one layer, unpacked once for the tenant
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if str(engine.paths.root) in line]
    assert len(mounts) == 2 and all(str(layer_dirs[0]) in m for m in mounts)
    assert a.layers == b.layers


def test_recover_cleans_up_after_an_interrupted_create(
    engine: Engine, busybox: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_interrupted(engine, ContainerSpec(image="busybox", command=("true",), name="half"), monkeypatch)
    cid = (engine.paths.names / "half").read_text().strip()
    lock_file = engine.paths.run / "locks" / cid
    # a create still running in another process holds the container's lock: never disturbed
    holder = subprocess.Popen(
        ["flock", "--exclusive", "--no-fork", str(lock_file), "sh", "-c", "echo held; exec sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert engine.recover() == []
        assert (engine.paths.names / "half").exists() and (engine.paths.containers / cid).exists()
    finally:
        holder.kill()
        holder.communicate()
    # its process died a moment ago (as a killed agent's create): a leftover at once, however young
    removed = engine.recover()
    assert "name half" in removed and any(r.startswith("bundle ") for r in removed)
    assert not lock_file.exists()
    engine.run(ContainerSpec(image="busybox", command=("true",), name="half"))  # the name is free again
    # the engine fixture checks that no mount, cgroup or directory of the half create is left
