"""The stock docker CLI against the operator's API: events, pause/unpause, rename, top, port, stats."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import docker
import pytest

from engine.dockerapi.events import event_stream
from engine.dockerapi.http import Request, Router, Stream, UnixServer, serve_in_thread
from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec
from tests.engine.dockerapi_support import DOCKER, DockerAPI, serving_api
from tests.stack import free_port

# written aside then renamed: a pause between truncating and writing /tmp/n would leave it empty
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.02; done"


@pytest.fixture()
def api(engine: Engine, busybox: Image) -> Iterator[DockerAPI]:
    with serving_api(engine) as served:
        yield served


def _until(predicate: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _counter(api: DockerAPI, name: str) -> int:
    cid = api.engine.get(name).id
    path: Path = api.engine.containers.store.directory(cid) / "rootfs" / "tmp" / "n"
    for _ in range(500):
        text = path.read_text().strip() if path.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    raise AssertionError("no counter")


def test_docker_events_while_a_container_starts(api: DockerAPI) -> None:
    since = time.time()
    until = since + 120
    reader = subprocess.Popen(
        [DOCKER, "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--format", "{{json .}}"],
        env=api.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        api.cli("run", "--name", "evented", "-l", "tier=front", "busybox", "sh", "-c", "exit 2", check=False)
        api.cli("rm", "evented")
        assert reader.stdout is not None
        seen: list[dict[str, object]] = []
        while not seen or seen[-1]["Action"] != "destroy":
            seen.append(json.loads(reader.stdout.readline()))
    finally:
        reader.kill()
        reader.wait()
    cid = seen[-1]["id"]
    ours = [e for e in seen if e["Type"] == "container" and e["id"] == cid]
    assert [e["Action"] for e in ours] == ["create", "start", "die", "destroy"]
    die = ours[2]
    assert die["Actor"] == {  # type: ignore[comparison-overlap]
        "ID": cid,
        "Attributes": {"image": "busybox", "name": "evented", "tier": "front", "exitCode": "2"},
    }
    assert die["from"] == "busybox" and die["scope"] == "local"


def test_docker_events_since_until_replays_and_filters(api: DockerAPI) -> None:
    since = f"{time.time():.3f}"
    api.cli("run", "--name", "one", "busybox", "true")
    api.cli("run", "--name", "two", "busybox", "true")
    until = f"{time.time():.3f}"
    out = api.cli(
        "events", "--since", since, "--until", until, "--filter", "event=die", "--filter", "container=two"
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and " container die " in lines[0] and "name=two" in lines[0]
    everything = api.cli(
        "events", "--since", since, "--until", until, "--format", "{{.Type}}:{{.Action}}"
    ).stdout.split()
    assert everything.count("container:create") == 2 and everything.count("container:die") == 2
    assert everything[:2] == ["network:create", "network:connect"]  # the tenant's default network, first
    bad = api.cli("events", "--since", since, "--until", until, "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr


def test_docker_pause_and_unpause_freeze_and_resume(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "counter", "busybox", "sh", "-c", COUNTER)
    first = _counter(api, "counter")
    _until(lambda: _counter(api, "counter") > first, "the counter to advance")
    assert api.cli("pause", "counter").stdout == "counter\n"
    state = json.loads(api.cli("inspect", "-f", "{{json .State}}", "counter").stdout)
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    assert "(Paused)" in api.cli("ps", "--format", "{{.Status}}").stdout
    frozen = _counter(api, "counter")
    time.sleep(0.5)  # 25 turns of the loop if it were not frozen
    assert _counter(api, "counter") == frozen
    again = api.cli("pause", "counter", check=False)
    assert again.returncode != 0 and "is already paused" in again.stderr
    frozen_exec = api.cli("exec", "counter", "true", check=False)
    assert (
        frozen_exec.returncode != 0 and "is paused, unpause the container before exec" in frozen_exec.stderr
    )
    api.cli("unpause", "counter")
    _until(lambda: _counter(api, "counter") > frozen, "the counter to advance again")
    not_paused = api.cli("unpause", "counter", check=False)
    assert not_paused.returncode != 0 and "is not paused" in not_paused.stderr
    api.cli("pause", "counter")
    api.cli("stop", "-t", "1", "counter")  # a paused container still stops
    assert json.loads(api.cli("inspect", "-f", "{{json .State.Status}}", "counter").stdout) == "exited"


def test_docker_rename_and_its_conflict(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "first", "busybox", "sleep", "300")
    api.cli("run", "-d", "--name", "second", "busybox", "sleep", "300")
    taken = api.cli("rename", "first", "second", check=False)
    assert taken.returncode != 0 and 'The container name "/second" is already in use' in taken.stderr
    bad = api.cli("rename", "first", "no/slashes", check=False)
    assert bad.returncode != 0 and "Invalid container name (no/slashes)" in bad.stderr
    api.cli("rename", "first", "third")
    names = sorted(api.cli("ps", "--format", "{{.Names}}").stdout.split())
    assert names == ["second", "third"]
    missing = api.cli("rename", "first", "fourth", check=False)
    assert missing.returncode != 0 and "No such container: first" in missing.stderr


def test_docker_top_shows_this_containers_processes_only(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "topped", "busybox", "sleep", "1234")
    api.cli("run", "-d", "--name", "other", "busybox", "sleep", "5678")
    out = api.cli("top", "topped").stdout.splitlines()
    assert out[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(out) == 2 and out[1].endswith("sleep 1234")
    assert out[1].split()[1] == str(api.engine.get("topped").pid)  # the host's pid, as dockerd shows
    unsupported = api.cli("top", "topped", "aux", check=False)
    assert unsupported.returncode != 0 and "ps_args 'aux' are not supported" in unsupported.stderr
    api.cli("stop", "-t", "0", "other")
    stopped = api.cli("top", "other", check=False)
    assert stopped.returncode != 0 and "is not running" in stopped.stderr


def test_docker_port_lists_the_published_ports(api: DockerAPI) -> None:
    port = free_port()
    api.cli("run", "-d", "--name", "published", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "300")
    assert api.cli("port", "published").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert api.cli("port", "published", "80").stdout == f"127.0.0.1:{port}\n"


def test_docker_stats_no_stream_shows_cpu_and_memory(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c", "while :; do :; done")
    api.cli("run", "-d", "--name", "idle", "busybox", "sleep", "300")
    out = api.cli(
        "stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.PIDs}}"
    ).stdout
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines()}
    assert set(rows) == {"busy", "idle"}
    busy_cpu, busy_mem, busy_mem_pct, busy_pids = rows["busy"]
    assert float(busy_cpu.rstrip("%")) > 10.0  # a busy loop, measured over a second
    assert busy_mem.endswith("/ 64MiB") and not busy_mem.startswith("0B")
    assert 0.0 < float(busy_mem_pct.rstrip("%")) < 100.0
    assert busy_pids == "1"
    assert float(rows["idle"][0].rstrip("%")) < 5.0


def test_stats_one_shot_and_stream_through_the_api(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "shot", "busybox", "sleep", "300")
    status, data = api.request("GET", "/containers/shot/stats?stream=0&one-shot=1")
    assert status == 200 and data["name"] == "/shot" and data["pids_stats"]["current"] == 1
    assert data["preread"] == "0001-01-01T00:00:00Z" and data["cpu_stats"]["system_cpu_usage"] > 0
    status, data = api.request("GET", "/containers/nosuch/stats?stream=0")
    assert (status, data) == (404, {"message": "No such container: nosuch"})


def _tenant_events_server(engine: Engine, tenant: str) -> tuple[UnixServer, Path]:
    router = Router()

    @router.route("GET", "/events")
    def events(request: Request) -> Stream:
        return event_stream(engine, request, tenant=tenant)

    path = Path(tempfile.mkdtemp(prefix="hpe")) / "t.sock"
    server = UnixServer(path, router)
    serve_in_thread(server)
    return server, path


def _get_lines(path: Path, query: str) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(str(path))
        sock.sendall(f"GET /v1.44/events?{query} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    text = b"".join(
        piece for i, piece in enumerate(body.split(b"\r\n")) if i % 2 == 1
    )  # chunked: size line, data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_tenants_event_stream_never_shows_another_tenant(engine: Engine, busybox: Image) -> None:
    since = time.time()
    ours = engine.run(ContainerSpec(image="busybox", command=("true",), tenant="acme", name="mine"))
    theirs = engine.run(ContainerSpec(image="busybox", command=("true",), tenant="globex", name="theirs"))
    engine.wait(ours.id, timeout=30)
    engine.wait(theirs.id, timeout=30)
    until = time.time()
    server, path = _tenant_events_server(engine, "acme")
    try:
        window = f"since={since:.3f}&until={until:.3f}"
        seen = _get_lines(path, window)
        assert {e["Actor"]["ID"] for e in seen} == {ours.id}  # type: ignore[index]
        for hostile in (
            {"container": [theirs.id]},
            {"container": ["theirs"], "type": ["container"]},
            {"tenant": ["globex"]},
        ):
            query = f"{window}&filters={quote(json.dumps(hostile))}"
            if "tenant" in hostile:  # a client never picks the tenant: refused
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(path))
                    sock.sendall(f"GET /v1.44/events?{query} HTTP/1.0\r\n\r\n".encode())
                    answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
                assert answer.startswith(b"HTTP/1.1 400") and b"invalid filter 'tenant'" in answer
            else:
                assert _get_lines(path, query) == []
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(path.parent, ignore_errors=True)


def test_a_client_that_hangs_up_ends_its_event_stream(api: DockerAPI) -> None:
    before = set(threading.enumerate())  # compare sets: threads of earlier calls may end meanwhile
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(api.socket))
        sock.sendall(b"GET /v1.44/events HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        _until(lambda: bool(set(threading.enumerate()) - before), "the server to serve the stream")
        serving = set(threading.enumerate()) - before
    _until(lambda: not any(t.is_alive() for t in serving), "the stream's thread to end")


def test_docker_py_pause_rename_top_stats_and_events(api: DockerAPI) -> None:
    client = docker.DockerClient(base_url=api.host, version="auto", timeout=120)
    try:
        since = int(time.time()) - 1
        container = client.containers.run("busybox", ["sleep", "300"], detach=True, name="py")
        container.pause()
        container.reload()
        assert container.status == "paused"
        container.unpause()
        container.rename("py2")
        container.reload()
        assert container.name == "py2"
        top = container.top()
        assert [p[-1] for p in top["Processes"]] == ["sleep 300"] and top["Titles"][1] == "PID"
        stats = container.stats(stream=False)
        assert stats["name"] == "/py2" and stats["memory_stats"]["usage"] > 0
        assert stats["precpu_stats"]["system_cpu_usage"] > 0  # two readings: the CPU % can be computed
        stream = container.stats(stream=True, decode=True)
        first, second = next(stream), next(stream)
        stream.close()
        assert second["preread"] == first["read"]
        assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
        container.remove(force=True)
        events = client.events(
            since=since, until=int(time.time()) + 1, decode=True, filters={"container": container.id}
        )
        actions = [e["Action"] for e in events if e["Type"] == "container"]
        assert actions[:5] == ["create", "start", "pause", "unpause", "rename"]
        assert actions[-2:] == ["die", "destroy"]
    finally:
        client.close()


def test_health_checks_wait_out_a_pause_and_go_on(api: DockerAPI) -> None:
    api.cli(
        "run", "-d", "--name", "checked", "--health-cmd", "test -e /tmp/ready", "--health-interval", "1s",
        "--health-retries", "1", "busybox", "sleep", "300",
    )  # fmt: skip

    def health() -> str:
        return str(json.loads(api.cli("inspect", "-f", "{{json .State.Health.Status}}", "checked").stdout))

    _until(lambda: health() == "unhealthy", "unhealthy")
    api.cli("pause", "checked")
    time.sleep(1.5)  # a probe is due meanwhile: it is skipped, the container is frozen
    api.cli("unpause", "checked")
    api.cli("exec", "checked", "touch", "/tmp/ready")
    _until(lambda: health() == "healthy", "healthy after the pause")
