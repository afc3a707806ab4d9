"""`hpctl compose` with real containers: a three-service project whose depends_on
service_healthy ordering is observed, `up` again keeping unchanged containers (same ids) and
recreating only the changed service, `logs` prefixed by container, `down` leaving nothing, and
a bad file that changes nothing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from engine.compose.deploy import LABEL_PROJECT
from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ExecSpec
from tests.engine.conftest import hpctl_argv, leaks

pytestmark = pytest.mark.privileged

# kv serves /ready only once it has slept 2s, and its healthcheck waits for that file. web
# fetches http://kv:8080/ready once at start, without retrying: it logs "kv ready" only if
# compose started it after kv was healthy. worker fetches from web by service name. setup is
# a one-shot that web waits for (service_completed_successfully). web is on both networks;
# worker only on front, where web's alias resolves and kv does not.
PROJECT = """\
name: ignored-when-p-given
x-base: &base
  image: busybox
  init: true
  stop_grace_period: 2s
services:
  kv:
    <<: *base
    command: ["sh", "-c", "mkdir /www && sleep 2 && echo ready >/www/ready && exec httpd -f -p 8080 -h /www"]
    volumes: [kvdata:/data, {type: tmpfs, target: /scratch, tmpfs: {size: 4m}}]
    networks: [back]
    healthcheck: {test: ["CMD", "test", "-f", "/www/ready"], interval: 1s, retries: 30}
  setup:
    <<: *base
    command: ["sh", "-c", "echo setup done"]
    networks: [back]
  web:
    <<: *base
    command:
      - sh
      - -c
      - |
        if wget -q -O- http://kv:8080/ready; then echo "kv ready"; else echo "kv NOT ready"; fi
        mkdir -p /www && echo "hello $${GREETING}" > /www/index.html
        exec httpd -f -p 8080 -h /www
    environment: {GREETING: "${GREETING:-world}"}
    networks: {back: {aliases: [site]}, front: {aliases: [site]}}
    depends_on:
      kv: {condition: service_healthy}
      setup: {condition: service_completed_successfully}
  worker:
    <<: *base
    command:
      - sh
      - -c
      - wget -q -O- http://site:8080/; wget -q -T 2 -O- http://kv:8080/ready || echo "no kv"; exec sleep 3600
    networks: [front]
    depends_on: [web]
networks: {back: {}, front: {}}
volumes: {kvdata: {}}
"""


def hpctl(
    engine: Engine, directory: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = hpctl_argv(engine, "compose", "-f", str(directory / "compose.yaml"), "-p", "demo", *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)


def ok(engine: Engine, directory: Path, *args: str) -> str:
    proc = hpctl(engine, directory, *args)
    assert proc.returncode == 0, f"hpctl compose {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def ids(engine: Engine) -> dict[str, str]:
    return {c.name: c.id for c in engine.list(all=True) if c.labels.get(LABEL_PROJECT) == "demo"}


def logs_of(engine: Engine, name: str) -> str:
    return "".join(line.text + "\n" for line in engine.logs(name))


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "compose.yaml").write_text(PROJECT)
    return tmp_path


def test_up_again_down(engine: Engine, busybox: Image, project: Path) -> None:
    ok(engine, project, "up", "-d")
    first = ids(engine)
    assert set(first) == {"demo-kv-1", "demo-setup-1", "demo-web-1", "demo-worker-1"}
    assert "kv ready" in logs_of(engine, "demo-web-1")  # web started only once kv was healthy
    worker = logs_of(engine, "demo-worker-1")
    assert "hello world" in worker and "no kv" in worker  # web by alias on front; kv only on back
    assert engine.get("demo-setup-1").exit_code == 0
    web = engine.get("demo-web-1")
    assert [(a["network"], a["aliases"]) for a in web.attachments()] == [
        ("demo_back", ["web", "site"]),
        ("demo_front", ["web", "site"]),
    ]

    ps = ok(engine, project, "ps")
    assert "demo-web-1" in ps and "running" in ps and "exited (0)" in ps
    logs = ok(engine, project, "logs")
    assert "demo-web-1    | kv ready" in logs and "demo-setup-1  | setup done" in logs
    assert ok(engine, project, "logs", "setup").strip() == "demo-setup-1 | setup done"

    ok(engine, project, "up", "-d")  # nothing changed: the same containers
    assert ids(engine) == first

    (project / "compose.yaml").write_text(PROJECT.replace("hello $${GREETING}", "bonjour $${GREETING}"))
    ok(engine, project, "up", "-d")
    second = ids(engine)
    assert second["demo-web-1"] != first["demo-web-1"]
    assert {k: v for k, v in second.items() if k != "demo-web-1"} == {
        k: v for k, v in first.items() if k != "demo-web-1"
    }

    (project / "compose.yaml").write_text(
        PROJECT.split("  worker:")[0] + "networks: {back: {}, front: {}}\nvolumes: {kvdata: {}}\n"
    )
    ok(engine, project, "up", "-d")  # worker is gone from the file: removed
    assert set(ids(engine)) == {"demo-kv-1", "demo-setup-1", "demo-web-1"}

    ok(engine, project, "down")
    assert ids(engine) == {}
    assert engine.network_list() == []
    assert [v.name for v in engine.volume_list()] == ["demo_kvdata"]  # kept without -v
    ok(engine, project, "down", "-v")
    assert engine.volume_list() == []
    assert leaks(engine.paths.root, engine.instance) == []


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda t: t.replace("  kv:\n", "  kv:\n    privileged: true\n"), "line 8: services.kv.privileged"),
        (lambda t: t.replace("depends_on: [web]", "depends_on: [worker]"), "cannot depend on itself"),
        (
            lambda t: t.replace("networks: [back]\n    healthcheck", "networks: [nope]\n    healthcheck"),
            "'nope'",
        ),
        (lambda t: t + "  : [\n", "YAML does not parse"),
    ],
)
def test_bad_file_changes_nothing(
    engine: Engine, busybox: Image, project: Path, edit: object, named: str
) -> None:
    ok(engine, project, "up", "-d")
    before = ids(engine)
    networks = [n.name for n in engine.network_list()]
    (project / "compose.yaml").write_text(edit(PROJECT))  # type: ignore[operator]
    proc = hpctl(engine, project, "up", "-d")
    assert proc.returncode != 0
    assert named in proc.stderr
    assert ids(engine) == before
    assert all(engine.get(name).status in ("running", "exited") for name in before)
    assert [n.name for n in engine.network_list()] == networks
    ok(engine, project, "down", "-v")
    assert leaks(engine.paths.root, engine.instance) == []


def test_failed_dependency_stops_up(engine: Engine, busybox: Image, project: Path) -> None:
    text = PROJECT.replace('command: ["sh", "-c", "echo setup done"]', 'command: ["sh", "-c", "exit 3"]')
    (project / "compose.yaml").write_text(text)
    proc = hpctl(engine, project, "up", "-d")
    assert proc.returncode != 0
    assert "demo-setup-1 exited with code 3" in proc.stderr
    assert "demo-web-1" not in ids(engine)  # nothing that depends on it was started
    ok(engine, project, "down", "-v")


# a and b take turns through files on a shared volume, a second apart, once the test says go:
# `logs -f` must print a1 b1 a2 b2 in that order (interleaved as the lines come).
BUILT = """\
x-wait: &wait
  volumes: [turns:/v]
services:
  a:
    <<: *wait
    build: ./app
    command: ["sh", "-c", "echo a0; until [ -f /v/go ]; do sleep 0.1; done; echo a1; sleep 1; touch /v/a1;
      until [ -f /v/b1 ]; do sleep 0.1; done; echo a2; sleep 1; touch /v/a2"]
  b:
    <<: *wait
    image: busybox
    command: ["sh", "-c", "echo b0; until [ -f /v/a1 ]; do sleep 0.1; done; echo b1; sleep 1; touch /v/b1;
      until [ -f /v/a2 ]; do sleep 0.1; done; echo b2"]
  c:
    build: {context: app, dockerfile: Dockerfile}
volumes: {turns: {}}
"""


def test_build_and_logs_follow(engine: Engine, busybox: Image, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(
        'FROM busybox\nRUN echo built-by-hostpanel > /built\nCMD ["cat", "/built"]\n'
    )
    (tmp_path / "compose.yaml").write_text(BUILT)
    ok(engine, tmp_path, "up", "-d")
    assert engine.image("demo-a:latest").id == engine.get("demo-a-1").image_id
    first = ids(engine)
    ok(engine, tmp_path, "up", "-d")  # the image exists: not rebuilt, the same containers
    assert ids(engine) == first
    engine.wait("demo-c-1", timeout=60)  # up started c again: its output is complete before the follow
    deadline = time.monotonic() + 30  # and written: its log holds the line (a loaded machine may lag)
    while "built-by-hostpanel" not in logs_of(engine, "demo-c-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    argv = hpctl_argv(engine, "compose", "-f", str(tmp_path / "compose.yaml"), "-p", "demo", "logs", "-f")
    errors = tmp_path / "follow.err"
    with errors.open("w") as err_file:
        follow = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_file, text=True)
    assert follow.stdout is not None
    lines = []
    while not {"demo-a-1 | a0", "demo-b-1 | b0"} <= set(lines):  # both followed from here on
        lines.append(follow.stdout.readline().rstrip("\n"))
    engine.exec("demo-b-1", ExecSpec(("touch", "/v/go"))).wait(30)
    # the rest from the same reader: communicate() reads the pipe itself and would lose what
    # readline() had already buffered (c's lines, when they came in one read with b0)
    lines += follow.stdout.read().splitlines()  # to the end: once every container stopped
    follow.wait(30)
    err = errors.read_text()
    assert follow.returncode == 0, err
    assert "demo-c-1 | built-by-hostpanel" in lines, err
    order = [line for line in lines if line.startswith(("demo-a-1 |", "demo-b-1 |"))][2:]
    assert order == ["demo-a-1 | a1", "demo-b-1 | b1", "demo-a-1 | a2", "demo-b-1 | b2"]
    (tmp_path / "app" / "Dockerfile").write_text('FROM busybox\nCMD ["echo", "rebuilt"]\n')
    ok(engine, tmp_path, "up", "-d", "--build")  # a new image: a and c are recreated, b is kept
    second = ids(engine)
    assert second["demo-b-1"] == first["demo-b-1"]
    assert second["demo-a-1"] != first["demo-a-1"] and second["demo-c-1"] != first["demo-c-1"]
    ok(engine, tmp_path, "down", "-v")
    assert ids(engine) == {}
