"""End to end: the verbs that need a live stream to the container on its host, through the
tenants' door and a real host agent (Redis, Celery, the engine): ``docker exec`` (with and
without a terminal), and who may use them."""

from __future__ import annotations

import hashlib
import io
import os
import select
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from docker import errors as docker_errors

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.dockerapi.certs import revoke_certificate
from tests.engine.terminal import Terminal
from tests.hostpanel.dockerapi.conftest import DOCKER, Client
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.stack import wait_for

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

    # -d: started on the host, the client goes at once; the exit code is kept when it ends
    docker.ok("exec", "-d", "web", "sh", "-c", "sleep 1; echo background > /tmp/bg")
    wait_for(lambda: docker("exec", "web", "cat", "/tmp/bg").stdout == "background\n", 30, "exec -d to run")

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

    # a running exec ends within seconds of its certificate's revocation
    laptop = docker_as(live.member, live.tenant, "second-laptop")
    assert laptop.issued is not None
    running = subprocess.Popen(
        [DOCKER, "exec", "web", "sh", "-c", "echo started; sleep 600"],
        env=laptop.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert running.stdout is not None and running.stdout.readline() == "started\n"
        revoke_certificate(Actor(user=live.member), live.tenant, laptop.issued.certificate.pk)
        assert running.wait(timeout=60) != 0  # the stream ended (and its exit code is refused to it)
    finally:
        running.kill()
        running.wait()
    # the agent completes the audit entry through the internal API once the process is gone, which
    # may come a moment after the client's stream ended
    ended = wait_for(
        lambda: (entry := exec_entries(live.tenant)[-1]).message.endswith(")") and entry,
        30,
        "the exec's audit entry to be completed",
    )
    assert ended.message == "command: sh -c 'echo started; sleep 600'; exit code 137 (access ended:" + (
        " the certificate was revoked, or its member is no longer a developer)"
    ), ended.message
    assert "No such container" not in laptop("exec", "web", "true").stderr  # refused before the lookup
    assert laptop("exec", "web", "true").returncode != 0
    assert docker.ok("exec", "web", "echo", "still-here") == "still-here\n"  # other certificates go on
    assert "sleep 600" not in docker.ok("exec", "web", "ps", "-o", "args")  # the exec's processes are gone


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
    streamed = viewer.docker_py().api.stats("web", decode=True)  # one reading a second
    first, second = next(streamed), next(streamed)
    assert first["read"] < second["read"] and second["preread"] == first["read"]
    assert second["pids_stats"]["current"] == 1
    streamed.close()

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


def copy_entries(tenant: Any) -> list[AuditLog]:
    return list(AuditLog.objects.filter(tenant=tenant, action="container.copy").order_by("pk"))


def test_docker_cp_both_ways_stays_inside_the_container(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client], tmp_path: Path
) -> None:
    live = live_tenant("dcp", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    docker.ok("run", "-d", "--name", "web", "busybox", "sleep", "3600")

    # into the container: a file and a directory tree
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (tmp_path / "site" / "deep").mkdir()
    (tmp_path / "site" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 1024)  # several chunks
    docker.ok("cp", str(tmp_path / "site"), "web:/tmp/")
    assert docker.ok("exec", "web", "cat", "/tmp/site/index.html") == "<h1>hi</h1>\n"
    assert docker.ok("exec", "web", "md5sum", "/tmp/site/deep/data.bin").split()[0] == (
        hashlib.md5((tmp_path / "site" / "deep" / "data.bin").read_bytes()).hexdigest()
    )
    # out of it, both a file and the tree, byte for byte
    out = tmp_path / "out"
    out.mkdir()
    docker.ok("cp", "web:/tmp/site", str(out))
    assert (out / "site" / "index.html").read_text() == "<h1>hi</h1>\n"
    assert (out / "site" / "deep" / "data.bin").read_bytes() == (tmp_path / "site/deep/data.bin").read_bytes()
    # docker-py: get_archive gives the tar and the stat
    chunks, stat = docker.docker_py().api.get_archive("web", "/tmp/site/index.html")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as got:
        extracted = got.extractfile("index.html")
        assert extracted is not None and extracted.read() == b"<h1>hi</h1>\n"
    assert (stat["name"], stat["size"]) == ("index.html", 12)
    missing = docker("cp", "web:/no/such/file", str(out))
    assert missing.returncode != 0 and "/no/such/file" in missing.stderr

    # a link planted in the container pointing at /etc resolves inside the container, never the host
    docker.ok("exec", "web", "sh", "-c", "echo container-secret > /etc/shadow; ln -s /etc /link")
    docker.ok("exec", "web", "ln", "-s", "/etc/shadow", "/direct")
    host_shadow = Path("/etc/shadow").read_bytes()
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    docker.ok("cp", "web:/link/shadow", str(stolen))
    assert (stolen / "shadow").read_bytes() == b"container-secret\n" != host_shadow
    docker.ok("cp", "-L", "web:/direct", str(stolen / "direct"))
    assert (stolen / "direct").read_bytes() == b"container-secret\n"
    docker.ok("cp", "web:/../../../../../etc/shadow", str(stolen / "dotdot"))
    assert (stolen / "dotdot").read_bytes() == b"container-secret\n"
    # and a link as the target of a copy in writes into the container's /etc, not the host's
    (tmp_path / "drop").write_text("planted\n")
    docker.ok("cp", str(tmp_path / "drop"), "web:/link/")
    assert docker.ok("exec", "web", "cat", "/etc/drop") == "planted\n"
    assert not Path("/etc/drop").exists()
    # a hostile archive member is refused, and nothing lands on the host
    escape = f"escape-{tmp_path.name}"
    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w") as archive:
        member = tarfile.TarInfo(f"../../../../../../tmp/{escape}")
        member.size = 4
        archive.addfile(member, io.BytesIO(b"evil"))
    with pytest.raises(docker_errors.APIError) as refused:
        docker.docker_py().api.put_archive("web", "/tmp", hostile.getvalue())
    assert refused.value.status_code == 400, refused.value
    assert not Path(f"/tmp/{escape}").exists()

    # a viewer may not copy either way; another tenant has no such container
    viewer = docker_as(MembershipFactory(tenant=live.tenant, role="viewer").user, live.tenant)
    for args in (["cp", "web:/etc/hostname", str(out)], ["cp", str(tmp_path / "drop"), "web:/tmp/drop"]):
        result = viewer(*args)
        assert result.returncode != 0 and "needs the developer role" in result.stderr, result.stderr
    other = TenantFactory(slug="bolt")
    outsider = docker_as(MembershipFactory(tenant=other, role="owner").user, other)
    result = outsider("cp", "web:/etc/hostname", str(out))
    assert result.returncode != 0 and "No such container: web" in result.stderr

    # every copy is audited, with its path and how it ended
    entries = copy_entries(live.tenant)
    messages = [e.message for e in entries]
    assert any(e.message.startswith("to web:/tmp/") and e.result == "ok" for e in entries), messages
    assert any(m.startswith("from web:/tmp/site; done") for m in messages), messages
    assert any(m.startswith("from web:/link/shadow; done") for m in messages), messages
    assert any(m.startswith("to web:/tmp; failed") for m in messages), messages
    denied = [e.message for e in entries if e.result == AuditLog.Result.DENIED]
    assert len(denied) >= 2 and all("needs the developer role" in m for m in denied), messages


def test_docker_attach_follows_a_running_container_from_now(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client]
) -> None:
    live = live_tenant("dat", "acme", "ann", "developer")
    docker = docker_as(live.member, live.tenant)
    script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"
    docker.ok("run", "-d", "--name", "ticker", "busybox", "sh", "-c", script)
    wait_for(lambda: "tick 3" in docker.ok("logs", "ticker"), 30, "the ticker to tick")
    before = docker.ok("logs", "ticker").split()
    attached = Terminal([DOCKER, "attach", "--no-stdin", "ticker"], docker.env())
    try:
        deadline = time.monotonic() + 30
        while attached.output.count(b"\n") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([attached.master], [], [], 0.2)
            if ready:
                attached.output += os.read(attached.master, 65536)
        lines = attached.output.decode().replace("\r", "").splitlines()
        numbers = [int(line.split()[1]) for line in lines[:3]]
        assert numbers == list(range(numbers[0], numbers[0] + 3)), lines  # in order, none missed
        assert numbers[0] > int(before[-1]) - 2, (before[-3:], lines)  # from about now, not the start
        docker.ok("stop", "ticker")
        attached.wait(timeout=60)  # the stream ends with the container (TimeoutExpired if not)
    finally:
        attached.proc.kill()
    # another tenant cannot attach to it
    other = TenantFactory(slug="bolt")
    outsider = docker_as(MembershipFactory(tenant=other, role="owner").user, other)
    result = outsider("attach", "ticker")
    assert result.returncode != 0 and "No such container: ticker" in result.stderr
