"""End to end: the stock docker CLI, through the tenants' door, runs a container on the tenant's
host (a real host agent, Redis and engine): run -d, ps, inspect, logs, stop, start, rm -f."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.deployments.models import App, Replica
from tests.hostpanel.dockerapi.conftest import DOCKER, Client
from tests.stack import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]


def test_the_docker_cli_runs_a_container_through_the_panel(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dk", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    container_id = docker.ok(
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "app=demo",
        "busybox",
        "sh",
        "-c",
        "echo hello-from-web; echo oops >&2; sleep 3600",
    ).strip()
    assert len(container_id) == 64
    # the panel's state: an app of the tenant with one replica, running on the tenant's host
    app = App.objects.get(tenant=live.tenant, name="web")
    replica = Replica.objects.get(app=app)
    assert replica.state == "running" and replica.host is not None and replica.host.name == "dk-h1"
    (engine_container,) = [c for c in live.agent.engine.list() if c.name == "acme-web-0"]
    assert engine_container.tenant == "acme" and engine_container.status == "running"

    assert docker.ok("ps", "--format", "{{.Names}} {{.Labels}}").strip() == "web app=demo"
    assert docker.ok("ps", "--format", "{{.Status}}").startswith("Up ")
    (doc,) = docker.json("container", "inspect", "web")
    assert doc["Id"] == container_id and doc["State"]["Running"] is True
    assert doc["Config"]["Labels"] == {"app": "demo"}

    def logs() -> Any:
        result = docker("logs", "web")
        return result if "hello-from-web" in result.stdout and "oops" in result.stderr else None

    wait_for(logs, 30, "the container's output in docker logs")  # stdout and stderr demultiplexed

    docker.ok("stop", "web")
    app.refresh_from_db()
    assert app.state == "stopped"
    wait_for(
        lambda: not any(c.status == "running" for c in live.agent.engine.list() if c.name == "acme-web-0"),
        30,
        "the engine's container to stop",
    )
    assert docker.ok("ps", "-q") == ""
    assert docker.ok("ps", "-a", "--format", "{{.Status}}").startswith("Exited")

    docker.ok("start", "web")
    assert docker.ok("ps", "--format", "{{.Names}}").strip() == "web"
    started = Replica.objects.get(app=app).started_at
    docker.ok("restart", "web")  # a new run of the same container
    replica = Replica.objects.get(app=app)
    assert replica.state == "running" and replica.started_at != started
    docker.ok("kill", "web")
    assert docker.ok("ps", "-q") == ""
    docker.ok("start", "web")

    docker.ok("rm", "-f", "web")
    assert not App.objects.filter(tenant=live.tenant).exists()
    wait_for(
        lambda: not [c for c in live.agent.engine.list(all=True) if c.name == "acme-web-0"],
        30,
        f"the host to remove the container\n{live.agent.log_tail()}",
    )

    # docker-py's high-level API, the same lifecycle
    client = docker.docker_py()
    made = client.containers.run(
        "busybox", ["sh", "-c", "echo from-docker-py; sleep 3600"], name="py", detach=True, labels={"k": "v"}
    )
    made.reload()  # run(detach=True) returns the container as created
    assert made.status == "running" and made.labels == {"k": "v"}
    assert [c.name for c in client.containers.list()] == ["py"]
    wait_for(lambda: b"from-docker-py" in made.logs(), 30, "docker-py's logs")
    made.stop()
    made.reload()
    assert made.status == "exited"
    made.remove(force=True)
    assert client.containers.list(all=True) == []

    # a container that exits by itself: its code through wait, its state in ps -a
    docker.ok("run", "-d", "--name", "once", "busybox", "sh", "-c", "exit 3")
    assert docker.ok("wait", "once").strip() == "3"
    assert docker.ok("ps", "-a", "--format", "{{.Status}}").startswith("Exited (3)")


def test_logs_follow_streams_until_the_container_stops(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dkf", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"
    docker.ok("run", "-d", "--name", "ticker", "busybox", "sh", "-c", script)
    follower = subprocess.Popen(
        [DOCKER, "logs", "-f", "--tail", "1", "ticker"],
        env=docker.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        seen = [follower.stdout.readline() for _ in range(5)]  # blocks until each line arrives
        numbers = [int(line.split()[1]) for line in seen]
        assert numbers == list(range(numbers[0], numbers[0] + 5)), seen  # in order, none missed
        docker.ok("stop", "ticker")
        assert follower.wait(timeout=30) == 0  # the stream ends when the container stops
    finally:
        follower.kill()
        follower.wait()


def test_docker_run_attached_prints_the_output_and_exits_with_the_code(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dka", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    result = docker(
        "run", "--name", "hello", "busybox", "sh", "-c", "echo hello-out; echo hello-err >&2; exit 3"
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, "hello-out\n", "hello-err\n")
    assert docker.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}").startswith("hello Exited (3)")
    # --rm: removed once it exits (the panel's app too)
    result = docker("run", "--rm", "--name", "once", "busybox", "echo", "bye")
    assert (result.returncode, result.stdout) == (0, "bye\n"), result.stderr
    assert not App.objects.filter(tenant=live.tenant, name="once").exists()
    assert docker.ok("ps", "-a", "--format", "{{.Names}}").split() == ["hello"]
