"""End to end: the verbs that need a live stream to the container on its host, through the
tenants' door and a real host agent (Redis, Celery, the engine): ``docker exec`` (with and
without a terminal), and who may use them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from tests.engine.terminal import Terminal
from tests.hostpanel.dockerapi.conftest import DOCKER, Client
from tests.hostpanel.factories import MembershipFactory, TenantFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]


def exec_entries(tenant: Any) -> list[AuditLog]:
    return list(AuditLog.objects.filter(tenant=tenant, action="container.exec").order_by("pk"))


def test_docker_exec_runs_on_the_containers_host(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dx", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    docker.ok("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo ready > /tmp/state; sleep 3600")

    # non-TTY: stdout and stderr apart, the exit code kept
    assert docker.ok("exec", "web", "echo", "hi") == "hi\n"
    result = docker("exec", "web", "sh", "-c", "cat /tmp/state; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "ready\n", "err\n")
    # -i: the client's stdin reaches the process, and its end ends the process's input
    piped = subprocess.run(
        [DOCKER, "exec", "-i", "web", "sh", "-c", "tr a-z A-Z; echo done"],
        input="shout\n",
        env=docker.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (piped.returncode, piped.stdout) == (0, "SHOUT\ndone\n"), piped.stderr
    # the environment, user and working directory of the exec create body
    script = "echo $X $(id -u) $PWD"
    options = ["-e", "X=1", "-u", "1000", "-w", "/tmp"]
    assert docker.ok("exec", *options, "web", "sh", "-c", script) == "1 1000 /tmp\n"

    # docker-py: exec_run gives the exit code and output; /exec/{id}/json through the low-level API
    client = docker.docker_py()
    code, output = client.containers.get("web").exec_run(["sh", "-c", "echo py; exit 4"])
    assert (code, output) == (4, b"py\n")
    exec_id = client.api.exec_create("web", ["true"])["Id"]
    client.api.exec_start(exec_id)
    assert client.api.exec_inspect(exec_id)["ExitCode"] == 0
    assert client.api.exec_inspect(exec_id)["Running"] is False

    # every exec is in the audit log with its command and exit code
    messages = [e.message for e in exec_entries(live.tenant)]
    assert "command: echo hi; exit code 0 (exited)" in messages
    assert any(m.startswith("command: sh -c 'cat /tmp/state;") and "exit code 7" in m for m in messages)
    assert all(e.result == AuditLog.Result.OK for e in exec_entries(live.tenant)), messages

    # a TTY exec driven through a terminal: typed input, the prompt, the shell's exit code
    terminal = Terminal([DOCKER, "exec", "-it", "web", "sh"], docker.env())
    terminal.read_until(b"# ")
    terminal.type(b"echo $((6*7)); stty size\r")
    terminal.read_until(b"42")
    terminal.read_until(b"24 80")
    terminal.type(b"exit 5\r")
    assert terminal.wait() == 5

    # a stopped container takes no exec
    docker.ok("stop", "web")
    stopped = docker("exec", "web", "true")
    assert stopped.returncode != 0 and "is not running" in stopped.stderr


def test_exec_stays_inside_the_tenant_and_the_role(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dxs", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    docker.ok("run", "-d", "--name", "web", "busybox", "sleep", "3600")
    before = len(exec_entries(live.tenant))

    # another tenant's web is no container at all
    other = TenantFactory(slug="bolt")
    outsider = docker_as(MembershipFactory(tenant=other, role="owner").user, other)
    result = outsider("exec", "web", "echo", "hi")
    assert result.returncode != 0 and "No such container: web" in result.stderr
    # nor is an exec id of tenant acme, made by its developer
    exec_id = docker.docker_py().api.exec_create("web", ["echo", "stolen"])["Id"]
    with pytest.raises(Exception, match=f"No such exec instance: {exec_id}"):
        outsider.docker_py().api.exec_start(exec_id)
    with pytest.raises(Exception, match="No such exec instance"):
        outsider.docker_py().api.exec_inspect(exec_id)

    # a viewer may not exec: a 403 naming the role
    viewer = docker_as(MembershipFactory(tenant=live.tenant, role="viewer").user, live.tenant)
    result = viewer("exec", "web", "echo", "hi")
    assert result.returncode != 0 and "needs the developer role" in result.stderr

    # privileged, and a user outside the container's range: refused, naming the field
    result = docker("exec", "--privileged", "web", "id")
    assert result.returncode != 0 and "Privileged is refused" in result.stderr
    result = docker("exec", "-u", "70000", "web", "id")
    assert result.returncode != 0 and "User" in result.stderr and "70000" in result.stderr

    # refusals are audited as denied; nothing ran
    denied = [e for e in exec_entries(live.tenant)[before:] if e.result == AuditLog.Result.DENIED]
    assert len(denied) == 3, [e.message for e in exec_entries(live.tenant)]
    assert not [e for e in exec_entries(live.tenant)[before:] if e.result == AuditLog.Result.OK]


def test_top_and_stats_read_the_containers_host(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dxr", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    container_id = docker.ok("run", "-d", "--name", "web", "busybox", "sleep", "3600").strip()

    # a viewer's certificate may read both
    viewer = docker_as(MembershipFactory(tenant=live.tenant, role="viewer").user, live.tenant)
    top = viewer.ok("top", "web").splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [line for line in top[1:] if line.endswith("sleep 3600")], top
    bad = viewer("top", "web", "aux")
    assert bad.returncode != 0 and "ps_args 'aux' are not supported" in bad.stderr

    line = viewer.ok("stats", "--no-stream", "--format", "{{.Name}}|{{.ID}}|{{.MemUsage}}|{{.PIDs}}").strip()
    name, short_id, memory, pids = line.split("|")
    assert (name, short_id, pids) == ("web", container_id[:12], "1"), line
    assert not memory.startswith("0B"), line  # a real reading of the container's cgroup
    reading = viewer.docker_py().containers.get("web").stats(stream=False)
    assert reading["id"] == container_id and reading["memory_stats"]["usage"] > 0
    assert reading["precpu_stats"]["cpu_usage"]["total_usage"] > 0  # two samples, a second apart

    # another tenant: no such container
    other = TenantFactory(slug="bolt")
    outsider = docker_as(MembershipFactory(tenant=other, role="owner").user, other)
    for verb in (["top", "web"], ["stats", "--no-stream", "web"]):
        result = outsider(*verb)
        assert result.returncode != 0 and "No such container: web" in result.stderr, verb

    # a stopped container: top says so, stats shows it without readings
    docker.ok("stop", "web")
    stopped = viewer("top", "web")
    assert stopped.returncode != 0 and "is not running" in stopped.stderr
    assert viewer.ok("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "web").strip() == "web 0"
