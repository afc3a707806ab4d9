"""Debian's docker-compose 1.29 (a client nobody here wrote) drives the operator's Docker API:
`up -d`, `ps`, `logs`, `exec`, `down -v` of a three-service project, and hostile compose files
refused with the field named and nothing left behind."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec
from tests.engine.conftest import leaks
from tests.engine.dockerapi_support import DockerAPI, serving_api

pytestmark = pytest.mark.privileged

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

# kv: busybox httpd with a CGI key-value store on the named volume; it becomes healthy only once
# the CGI exists, two seconds after it starts. worker: posts $GREETING to kv by service name once,
# without retrying (so it only succeeds if compose waited for kv's health), then serves a page.
# web: a CGI that fetches from kv and from worker by service name.
PROJECT = """\
services:
  kv:
    image: busybox
    command:
      - sh
      - -c
      - |
        sleep 2
        mkdir -p /www/cgi-bin
        cat > /www/cgi-bin/kv <<'CGI'
        #!/bin/sh
        echo "Content-Type: text/plain"
        echo
        key="$${QUERY_STRING:-none}"
        if [ "$$REQUEST_METHOD" = POST ]; then
          cat > "/data/$$key"; echo "stored $$key"
        else
          cat "/data/$$key"
        fi
        CGI
        chmod +x /www/cgi-bin/kv
        exec httpd -f -vv -p 8080 -h /www
    volumes: [kvdata:/data]
    networks: [back]
    healthcheck:
      test: ["CMD", "test", "-x", "/www/cgi-bin/kv"]
      interval: 1s
      timeout: 2s
      retries: 60
  worker:
    image: busybox
    environment:
      GREETING: hello-from-worker
    command:
      - sh
      - -c
      - |
        wget -q -O- --post-data "$$GREETING" 'http://kv:8080/cgi-bin/kv?greeting' || exit 3
        mkdir -p /srv && echo "worker done" > /srv/index.html
        exec httpd -f -p 8080 -h /srv
    depends_on:
      kv:
        condition: service_healthy
    networks: [back]
  web:
    image: busybox
    environment:
      STORE: kv:8080
    command:
      - sh
      - -c
      - |
        mkdir -p /www/cgi-bin
        cat > /www/cgi-bin/page <<'CGI'
        #!/bin/sh
        echo "Content-Type: text/plain"
        echo
        echo "store: $$(wget -q -O- "http://$$STORE/cgi-bin/kv?greeting")"
        echo "worker: $$(wget -q -O- http://worker:8080/)"
        CGI
        chmod +x /www/cgi-bin/page
        exec httpd -f -p 8080 -h /www
    depends_on:
      kv:
        condition: service_healthy
      worker:
        condition: service_started
    networks: [back]
volumes:
  kvdata:
networks:
  back:
"""


class Compose:
    """docker-compose against one served API, one project, one compose file."""

    def __init__(self, api: DockerAPI, directory: Path, text: str) -> None:
        self.api = api
        self.project = f"hpc{secrets.token_hex(3)}"
        self.file = directory / "compose.yml"
        self.file.write_text(text)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``docker-compose -f FILE ARGS`` (exit status not checked)."""
        if not Path(COMPOSE).exists():
            pytest.fail(f"{COMPOSE} is missing: `make install` installs Debian's docker-compose")
        env = {**self.api.env(), "COMPOSE_PROJECT_NAME": self.project}
        return subprocess.run(
            [COMPOSE, "--ansi", "never", "-f", str(self.file), *args],
            env=env,
            cwd=self.file.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def ok(self, *args: str) -> str:
        """Run, require success, return stdout."""
        proc = self.run(*args)
        assert proc.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout


@pytest.fixture()
def api(engine: Engine, busybox: Image) -> Iterator[DockerAPI]:
    with serving_api(engine) as served:
        yield served


def _nothing_left(engine: Engine) -> None:
    assert engine.list(all=True) == []
    assert engine.network_list() == []
    assert engine.volume_list() == []
    assert leaks(engine.paths.root, engine.instance) == []


def test_compose_up_ps_exec_run_logs_down(engine: Engine, api: DockerAPI, tmp_path: Path) -> None:
    compose = Compose(api, tmp_path, PROJECT)
    p = compose.project
    compose.ok("up", "-d")

    containers = {c.name: c for c in engine.list(all=True)}
    assert set(containers) == {f"{p}_kv_1", f"{p}_worker_1", f"{p}_web_1"}
    web = containers[f"{p}_web_1"]
    assert web.labels["com.docker.compose.project"] == p  # labels come back exactly as sent
    assert web.labels["com.docker.compose.service"] == "web"
    assert web.labels["com.docker.compose.container-number"] == "1"
    assert web.network == f"{p}_back" and "web" in web.network_aliases
    network = engine.network(f"{p}_back")
    assert network.labels == {
        "com.docker.compose.network": "back",
        "com.docker.compose.project": p,
        "com.docker.compose.version": "1.29.2",
    }
    volume = engine.volume(f"{p}_kvdata")
    assert volume.labels["com.docker.compose.volume"] == "kvdata"

    rows = [re.split(r"\s{2,}", line.strip()) for line in compose.ok("ps").splitlines()]
    states = {row[0]: row[2] for row in rows if row[0].startswith(p)}  # Name, Command, State, Ports
    assert states == {f"{p}_kv_1": "Up (healthy)", f"{p}_worker_1": "Up", f"{p}_web_1": "Up"}
    assert sorted(compose.ok("ps", "-q").split()) == sorted(c.id for c in containers.values())
    assert set(compose.ok("ps", "--services").split()) == {"kv", "worker", "web"}

    # web reaches kv and worker by service name; the value is the worker's, written through kv
    page = compose.ok("exec", "-T", "web", "wget", "-q", "-O-", "http://localhost:8080/cgi-bin/page")
    assert page.splitlines() == ["store: hello-from-worker", "worker: worker done"]
    stored = compose.ok("exec", "-T", "kv", "cat", "/data/greeting")
    assert stored == "hello-from-worker"

    # a one-off `run` while web runs: compose links it to demo_web_1 (web, demo_web_1, web_1)
    ran = compose.run("run", "--rm", "-T", "web", "wget", "-q", "-O-", "http://kv:8080/cgi-bin/kv?greeting")
    assert ran.returncode == 0 and ran.stdout == "hello-from-worker", ran.stderr
    assert {c.name for c in engine.list(all=True)} == set(containers)  # --rm removed the one-off

    logs = compose.ok("logs", "--no-color")
    assert "stored greeting" in logs  # the worker's output, prefixed by compose
    assert any(line.startswith("worker_1") and "stored greeting" in line for line in logs.splitlines())
    assert any(line.startswith("kv_1") and "url:/cgi-bin/kv" in line for line in logs.splitlines())

    # a changed service is recreated (renamed aside, created anew, the old one removed); the
    # others are kept
    compose.file.write_text(PROJECT.replace("STORE: kv:8080", "STORE: kv:8080\n      EXTRA: recreated"))
    again = compose.run("up", "-d")
    assert again.returncode == 0, again.stderr
    assert f"Recreating {p}_web_1" in again.stderr and f"{p}_kv_1 is up-to-date" in again.stderr
    recreated = {c.name: c for c in engine.list(all=True)}
    assert set(recreated) == set(containers) and recreated[f"{p}_web_1"].id != web.id
    assert recreated[f"{p}_kv_1"].id == containers[f"{p}_kv_1"].id
    assert compose.ok("exec", "-T", "web", "sh", "-c", "echo $EXTRA") == "recreated\n"
    page = compose.ok("exec", "-T", "web", "wget", "-q", "-O-", "http://localhost:8080/cgi-bin/page")
    assert page.splitlines()[0] == "store: hello-from-worker"

    down = compose.run("down", "-v")
    assert down.returncode == 0, down.stderr
    assert f"Removing network {p}_back" in down.stderr and f"Removing volume {p}_kvdata" in down.stderr
    _nothing_left(engine)


ATTACHED = """\
services:
  b:
    image: busybox
    command: ["sh", "-c", "echo b-started; exec sleep 600"]
  job:
    image: busybox
    command: ["sh", "-c", "echo job-says-hi; exit 7"]
    depends_on: [b]
"""


def test_attached_up_streams_logs_and_returns_the_exit_code(
    engine: Engine, api: DockerAPI, tmp_path: Path
) -> None:
    compose = Compose(api, tmp_path, ATTACHED)
    up = compose.run("up", "--exit-code-from", "job")  # attaches to both, stops b when job exits
    assert up.returncode == 7, up.stderr
    assert any(line.startswith("b_1") and line.endswith("b-started") for line in up.stdout.splitlines())
    assert any(line.startswith("job_1") and line.endswith("job-says-hi") for line in up.stdout.splitlines())
    assert {c.name: c.status for c in engine.list(all=True)} == {
        f"{compose.project}_b_1": "exited",
        f"{compose.project}_job_1": "exited",
    }
    compose.ok("down", "-v")
    _nothing_left(engine)


HOSTILE = [
    ("privileged: true", "HostConfig.Privileged"),
    ("network_mode: host", "HostConfig.NetworkMode"),
    ("pid: host", "HostConfig.PidMode"),
    ("volumes: ['/etc:/x']", "HostConfig.Binds"),
    ("cap_add: [SYS_ADMIN]", "HostConfig.CapAdd"),
    ("volumes: [{type: bind, source: /, target: /host}]", "HostConfig.Mounts"),
    ("devices: ['/dev/mem:/dev/mem']", "HostConfig.Devices"),
    ("security_opt: ['seccomp:unconfined']", "HostConfig.SecurityOpt"),
    ("ipc: host", "HostConfig.IpcMode"),
    ("userns_mode: host", "HostConfig.UsernsMode"),
    ("sysctls: {net.ipv4.ip_forward: 1}", "HostConfig.Sysctls"),
    ("cgroup_parent: /", "HostConfig.CgroupParent"),
]


def test_hostile_compose_files_are_refused_and_leave_nothing(
    engine: Engine, api: DockerAPI, tmp_path: Path
) -> None:
    for index, (line, field) in enumerate(HOSTILE):
        directory = tmp_path / str(index)
        directory.mkdir()
        text = f"services:\n  evil:\n    image: busybox\n    command: [sleep, '60']\n    {line}\n"
        compose = Compose(api, directory, text)
        up = compose.run("up", "-d")
        assert up.returncode != 0, f"{line!r} was accepted: {up.stderr}"
        assert f"Cannot create container for service evil: {field} is refused" in up.stderr, up.stderr
        assert engine.list(all=True) == [], line  # the refused create made nothing
        # compose made the project's default network before the create (not with network_mode:
        # host); that is compose's own, and `down -v` takes it away again
        made = [n.name for n in engine.network_list()]
        assert made == ([] if "network_mode" in line else [f"{compose.project}_default"])
        compose.ok("down", "-v")
        _nothing_left(engine)


def test_links_name_containers_of_the_same_network_only(engine: Engine, api: DockerAPI) -> None:
    engine.network_create("n1")
    engine.network_create("n2")
    target = engine.create(ContainerSpec(image="busybox", command=("sleep", "60"), name="a", network="n1"))
    engine.start(target.id)

    def create(network: str, links: object) -> tuple[int, Any]:
        body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": network, "Links": links}}
        return api.request("POST", "/containers/create", body)

    status, answer = create("n2", ["a:x"])
    assert status == 403 and "HostConfig.Links is refused: a is not on network n2" in answer["message"]
    status, answer = create("bridge", ["a:x"])
    assert status == 403 and "HostConfig.Links is refused: legacy links" in answer["message"]
    status, answer = create("n1", ["nobody:x"])
    assert status == 400 and "could not get container for nobody" in answer["message"]
    status, answer = create("n1", "a:x")
    assert status == 400 and "HostConfig.Links must be a list" in answer["message"]
    assert [c.name for c in engine.list(all=True)] == ["a"]  # the refusals made nothing

    status, answer = create("n1", ["a:a", f"/a:/self/{target.short_id}", "a:x"])
    assert status == 201, answer
    assert answer["Warnings"] == ["link alias 'x' is not resolvable here; reach a by its name"]


TWO_NETWORKS = """\
services:
  db:
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /etc]
    networks:
      backend:
        aliases: [database]
  api:
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /etc]
    networks: [frontend, backend]
  web:
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /etc]
    networks: [frontend]
networks:
  frontend:
  backend:
"""


def test_a_service_on_two_networks_reaches_both_and_names_stay_per_network(
    engine: Engine, api: DockerAPI, tmp_path: Path
) -> None:
    compose = Compose(api, tmp_path, TWO_NETWORKS)
    p = compose.project
    compose.ok("up", "-d")
    on = {c.name: sorted(a["network"] for a in c.attachments()) for c in engine.list(all=True)}
    assert on == {
        f"{p}_db_1": [f"{p}_backend"],
        f"{p}_api_1": [f"{p}_backend", f"{p}_frontend"],
        f"{p}_web_1": [f"{p}_frontend"],
    }

    def fetch(service: str, host: str) -> subprocess.CompletedProcess[str]:
        return compose.run(
            "exec", "-T", service, "timeout", "5", "wget", "-q", "-O-", f"http://{host}:8080/hostname"
        )

    for host in ("db", "database", "web"):
        got = fetch("api", host)
        assert got.returncode == 0 and got.stdout.strip(), (host, got.stderr)
    assert fetch("web", "api").returncode == 0 and fetch("db", "api").returncode == 0
    for service, host in (("web", "db"), ("web", "database"), ("db", "web")):
        assert fetch(service, host).returncode != 0, f"{service} resolved {host} of another network"
    # an unchanged second `up` keeps every container (compose finds each network it expects)
    again = compose.run("up", "-d")
    assert again.returncode == 0 and "Recreating" not in again.stderr, again.stderr
    compose.ok("down", "-v")
    _nothing_left(engine)
