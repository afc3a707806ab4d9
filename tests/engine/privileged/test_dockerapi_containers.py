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
from tests.engine.dockerapi_support import DOCKER, DockerAPI, serving_api


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
    piped = subprocess.run(
        [DOCKER, "exec", "-i", "web", "wc", "-l"],
        input="a\nb\nc\n",
        env=api.env(),
        capture_output=True,
        text=True,
    )
    assert piped.returncode == 0 and piped.stdout.strip() == "3"
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


def test_always_keeps_restarting_across_an_api_restart_until_stopped(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "loop", "--restart", "always", "busybox", "sh", "-c", "sleep 0.3; exit 1")

    def restarts() -> int:
        return int(api.cli("inspect", "-f", "{{.RestartCount}}", "loop").stdout)

    until(lambda: restarts() >= 1, "a restart by the policy")
    api.cli("restart", "-t", "1", "loop")
    after_restart = restarts()
    until(lambda: restarts() > after_restart, "the policy still restarting after docker restart")
    api.cli("stop", "-t", "1", "loop")
    assert api.cli("inspect", "-f", "{{.State.Status}}", "loop").stdout.strip() == "exited"
    stopped_at = restarts()
    api.cli("run", "--rm", "busybox", "sleep", "1")  # time for a wrongful restart to show
    assert restarts() == stopped_at
    assert api.cli("inspect", "-f", "{{.State.Status}}", "loop").stdout.strip() == "exited"


def test_logs_since_and_until_select_by_time(api: DockerAPI) -> None:
    api.cli("run", "--name", "talker", "busybox", "sh", "-c", "echo early; sleep 1.2; echo late")
    lines = api.cli("logs", "-t", "talker").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["early", "late"]
    late_time = lines[1].split(" ", 1)[0]
    assert api.cli("logs", "--since", late_time, "talker").stdout == "late\n"
    assert api.cli("logs", "--until", late_time, "talker").stdout.startswith("early\n")
    assert api.cli("logs", "--until", "2000-01-01T00:00:00Z", "talker").stdout == ""
    assert api.cli("logs", "--tail", "1", "talker").stdout == "late\n"
    assert api.cli("logs", "--tail", "0", "talker").stdout == ""


def test_a_restarted_daemon_removes_rm_containers_that_exited_meanwhile(api: DockerAPI) -> None:
    status, answer = api.request(
        "POST",
        "/containers/create?name=gone",
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": True}},
    )
    assert status == 201, answer
    api.engine.start("gone")  # behind the daemon's back: no watcher sees it exit
    api.engine.wait("gone", timeout=30)
    assert api.engine.get("gone").status == "exited"
    with serving_api(api.engine) as restarted:
        assert restarted.containers() == []


def test_the_cli_s_parallel_requests_all_get_through(api: DockerAPI) -> None:
    ids = [api.cli("create", "--network", "none", "busybox", "true").stdout.strip() for _ in range(24)]
    result = api.cli("rm", "-f", *ids, check=False)  # the CLI sends the 24 removals at once
    assert result.returncode == 0, result.stderr
    assert api.containers() == []


def test_container_prune_removes_only_stopped_ones(api: DockerAPI) -> None:
    api.cli("run", "--name", "done-a", "-l", "keep=no", "busybox", "true")
    api.cli("run", "--name", "done-b", "-l", "keep=yes", "busybox", "true")
    api.cli("run", "-d", "--name", "alive", "-l", "keep=no", "busybox", "sleep", "60")
    api.cli("container", "prune", "-f", "--filter", "label=keep=no")
    assert names(api, "-a") == ["alive", "done-b"]
    api.cli("container", "prune", "-f")
    assert names(api, "-a") == ["alive"]


def test_exec_inspect_resize_and_detached_start(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "host", "busybox", "sleep", "60")
    status, created = api.request("POST", "/containers/host/exec", {"Cmd": ["sh", "-c", "exit 7"]})
    assert status == 201
    exec_id = created["Id"]
    status, info = api.request("GET", f"/exec/{exec_id}/json")
    assert status == 200 and info["Running"] is False and info["ExitCode"] is None
    assert info["ContainerID"] == api.engine.get("host").id
    status, _ = api.request("POST", f"/exec/{exec_id}/resize?h=40&w=100")
    assert status == 200  # a non-TTY exec has no terminal: resizing it is a no-op
    status, _ = api.request("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert status == 200
    until(lambda: api.request("GET", f"/exec/{exec_id}/json")[1]["ExitCode"] == 7, "the detached exec's exit")
    status, again = api.request("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert status == 409, again
    status, missing = api.request("GET", "/exec/nope/json")
    assert status == 404 and missing["message"] == "No such exec instance: nope"
    api.cli("stop", "-t", "0", "host")
    status, refused = api.request("POST", "/containers/host/exec", {"Cmd": ["true"]})
    assert status == 409 and "is not running" in refused["message"]
