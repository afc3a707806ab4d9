"""The stock docker CLI drives real containers through the operator's Docker Engine API."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from engine.engine import Engine
from engine.images.model import Image
from tests.engine.dockerapi_support import DockerAPI, serving_api


@pytest.fixture()
def api(engine: Engine, busybox: Image) -> Iterator[DockerAPI]:
    with serving_api(engine) as served:
        yield served


def names(api: DockerAPI, *args: str) -> list[str]:
    out = api.cli("ps", "--format", "{{.Names}}", *args).stdout
    return sorted(out.split())


def until(predicate: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_run_rm_prints_the_output_and_leaves_nothing(api: DockerAPI) -> None:
    result = api.cli("run", "--rm", "busybox", "echo", "hi")
    assert result.stdout == "hi\n"
    assert api.containers() == []


def test_run_rm_exits_with_the_container_status(api: DockerAPI) -> None:
    result = api.cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    assert api.containers() == []


def test_run_without_rm_keeps_the_exited_container(api: DockerAPI) -> None:
    assert api.cli("run", "--name", "once", "busybox", "sh", "-c", "exit 4", check=False).returncode == 4
    state = json.loads(api.cli("inspect", "-f", "{{json .State}}", "once").stdout)
    assert state["Status"] == "exited" and state["ExitCode"] == 4 and state["Running"] is False
    assert names(api, "-a", "--filter", "exited=4") == ["once"]
    assert names(api, "-a", "--filter", "exited=0") == []


def test_a_missing_command_exits_127_like_dockerd_and_creates_nothing(api: DockerAPI) -> None:
    result = api.cli("run", "--rm", "busybox", "no-such-command", check=False)
    assert result.returncode == 127
    assert "executable file not found" in result.stderr
    assert api.containers() == []


def test_detached_lifecycle(api: DockerAPI) -> None:
    script = "echo started; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"
    cid = api.cli(
        "run", "-d", "--name", "web", "-l", "app=shop", "-l", "tier=a=b, c", "busybox", "sh", "-c", script
    )
    full_id = cid.stdout.strip()
    assert len(full_id) == 64

    assert names(api) == ["web"]
    assert names(api, "--filter", "label=app=shop") == ["web"]
    assert names(api, "--filter", "label=app=other") == []
    assert names(api, "--filter", "name=we", "--filter", "status=running") == ["web"]
    assert names(api, "--filter", "ancestor=busybox") == ["web"]
    assert names(api, "--filter", f"id={full_id[:6]}") == ["web"]
    until(lambda: "started" in api.cli("logs", "web").stdout, "the first line")
    logs = api.cli("logs", "web")
    assert logs.stdout == "started\n" and logs.stderr == "oops\n"
    stamped = (
        api.cli("logs", "--timestamps", "--tail", "1", "web").stdout + api.cli("logs", "-t", "web").stderr
    )
    assert "Z started\n" in stamped or "Z oops\n" in stamped

    exec_result = api.cli("exec", "web", "echo", "from exec")
    assert exec_result.stdout == "from exec\n"
    assert api.cli("exec", "web", "sh", "-c", "exit 6", check=False).returncode == 6

    inspected = json.loads(api.cli("inspect", full_id[:12]).stdout)[0]
    assert inspected["Id"] == full_id and inspected["Name"] == "/web"
    assert inspected["Config"]["Labels"] == {"app": "shop", "tier": "a=b, c"}
    assert inspected["Config"]["Image"] == "busybox"
    assert inspected["State"]["Status"] == "running" and inspected["State"]["Running"] is True
    assert inspected["State"]["Pid"] > 0 and inspected["State"]["StartedAt"].startswith("20")

    api.cli("stop", "-t", "5", "web")
    assert names(api) == []
    assert names(api, "-a", "--filter", "status=exited") == ["web"]
    assert "bye\n" in api.cli("logs", "web").stdout
    assert api.cli("wait", "web").stdout.strip() == "0"

    api.cli("restart", "-t", "1", "web")
    assert names(api) == ["web"]
    api.cli("kill", "web")
    assert api.cli("wait", "web").stdout.strip() == "137"
    assert names(api, "-a", "--filter", "status=exited") == ["web"]

    api.cli("start", "web")
    api.cli("rm", "-f", "web")
    assert api.containers() == []


def test_logs_follow_ends_when_the_container_stops(api: DockerAPI) -> None:
    api.cli(
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo n$i; sleep 0.2; done",
    )
    result = api.cli("logs", "-f", "counter", timeout=60)
    assert result.stdout == "n1\nn2\nn3\n"


def test_wait_blocks_until_the_exit(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "sleep 0.5; exit 9")
    assert api.cli("wait", "sleeper").stdout.strip() == "9"


def test_a_taken_name_is_a_409_in_dockerds_words(api: DockerAPI) -> None:
    api.cli("create", "--name", "twice", "busybox", "true")
    result = api.cli("create", "--name", "twice", "busybox", "true", check=False)
    assert result.returncode != 0
    assert 'The container name "/twice" is already in use by container' in result.stderr
    assert len(api.containers()) == 1


def test_unknown_references_are_no_such_container(api: DockerAPI) -> None:
    for verb in (["inspect"], ["start"], ["stop"], ["rm"], ["logs"], ["kill"], ["exec", "--"]):
        target = ["ghost", "true"] if verb[0] == "exec" else ["ghost"]
        result = api.cli(*verb, *target, check=False)
        assert result.returncode != 0
        assert "No such container: ghost" in result.stderr or "No such object: ghost" in result.stderr, verb


def test_rm_of_a_running_container_needs_force(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    result = api.cli("rm", "busy", check=False)
    assert result.returncode != 0 and "stop the container before removing or force remove" in result.stderr
    assert names(api) == ["busy"]
    api.cli("rm", "-f", "busy")
    assert api.containers() == []


def test_resources_restart_policy_and_health_come_back_in_inspect(api: DockerAPI) -> None:
    api.cli(
        "run", "-d", "--name", "limited", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50",
        "--restart", "on-failure:2", "--health-cmd", "test -e /tmp/ready", "--health-interval", "1s",
        "--health-retries", "1", "--stop-signal", "SIGINT", "--stop-timeout", "3", "-e", "GREETING=hi",
        "-w", "/srv", "--init", "busybox", "sleep", "60",
    )  # fmt: skip
    info = json.loads(api.cli("inspect", "limited").stdout)[0]
    host = info["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 50
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert info["Config"]["StopSignal"] == "SIGINT" and info["Config"]["StopTimeout"] == 3
    assert "GREETING=hi" in info["Config"]["Env"] and info["Config"]["WorkingDir"] == "/srv"
    assert info["Path"] == "sleep" and info["Args"] == ["60"]
    until(lambda: names(api, "--filter", "health=unhealthy") == ["limited"], "unhealthy")
    api.cli("exec", "limited", "touch", "/tmp/ready")
    until(lambda: names(api, "--filter", "health=healthy") == ["limited"], "healthy")
    health = json.loads(api.cli("inspect", "-f", "{{json .State.Health}}", "limited").stdout)
    assert health["Status"] == "healthy" and health["Log"][-1]["ExitCode"] == 0


def test_on_failure_restarts_up_to_the_maximum(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")

    def done() -> bool:
        out = api.cli("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky").stdout.split()
        return out == ["2", "exited"]

    until(done, "two restarts, then exited")


def test_published_port_and_named_volume(api: DockerAPI) -> None:
    api.cli("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert api.cli("run", "--rm", "-v", "shared:/data:ro", "busybox", "cat", "/data/f").stdout == "kept\n"
    api.cli("run", "-d", "--name", "pub", "-p", "127.0.0.1::8080", "busybox", "sleep", "60")
    port = api.cli("port", "pub", "8080/tcp", check=False).stdout
    ports = json.loads(api.cli("inspect", "-f", "{{json .NetworkSettings.Ports}}", "pub").stdout)
    binding = ports["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1" and int(binding["HostPort"]) > 0
    assert port == "" or binding["HostPort"] in port
    api.cli("rm", "-f", "pub")
    api.engine.volume_remove("shared")


def test_the_socket_is_root_only(api: DockerAPI) -> None:
    assert api.socket.stat().st_mode & 0o777 == 0o600
    nobody_config = api.socket.parent / "nobody"
    nobody_config.mkdir()
    os.chown(nobody_config, 65534, 65534)
    env = {**api.env(), "DOCKER_CONFIG": str(nobody_config)}
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "docker", "ps"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "permission denied" in result.stderr.lower()
