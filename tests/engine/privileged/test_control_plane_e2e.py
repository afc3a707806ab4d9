"""The control plane in containers (docker/): docker/build.sh builds the panel, PostgreSQL, Redis and
Caddy images with `hpctl build` FROM a debootstrap base, and Debian's docker-compose 1.29 brings
docker/compose.yaml up through the operator's Docker API. The panel answers /healthz through Caddy
on the published port, on PostgreSQL, and Redis refuses a client without the panel's password.

The engine root lives under var/docker/e2e-root (not a temporary one) so the base image and the
builds' layer cache survive across runs: a warm run re-checks every build step in seconds; a cold
one (a fresh machine) bootstraps Debian and builds everything once.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.engine import Engine
from tests.engine.conftest import tear_down
from tests.engine.dockerapi_support import DockerAPI, serving_api
from tests.stack import free_port

REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / "var" / "docker"
ROOT = CACHE / "e2e-root"
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
# a tier of its own (`make test-control-plane`): a cold build alone takes 6-7 minutes
pytestmark = pytest.mark.control_plane

IMAGES = ("debian:bookworm", "panel:latest", "postgres:latest", "redis:latest", "caddy:latest")


@pytest.fixture()
def plane_engine() -> Iterator[Engine]:
    """An engine on the kept root with an instance of its own; everything it ran is removed after."""
    ROOT.mkdir(parents=True, exist_ok=True)
    instance = f"hpt-{secrets.token_hex(4)}"
    eng = Engine(root=ROOT, instance=instance)
    yield eng
    tear_down(eng, volumes=True)
    eng.images.prune()  # the images the last run's tags moved away from (the kept root grows not)


def _host_env() -> dict[str, str]:
    """This process's environment without the Docker client's and the panel's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "HOSTPANEL_"))}


def compose(api: DockerAPI, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker/compose.yaml ARGS`` against ``api``; fails the test on an error."""
    if not Path(COMPOSE).exists():
        pytest.fail(f"{COMPOSE} is missing: `make install` installs Debian's docker-compose")
    proc = subprocess.run(
        [COMPOSE, "--ansi", "never", "-f", str(REPO / "docker" / "compose.yaml"), *args],
        env={**api.env(), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET http://127.0.0.1:PORT/PATH: the status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_healthy(port: int, api: DockerAPI, env: dict[str, str], seconds: float = 240) -> dict[str, object]:
    """The /healthz document once the panel answers 200 (it migrates PostgreSQL first)."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = get(port, "/healthz")
            if status == 200:
                doc = json.loads(body)
                assert isinstance(doc, dict)
                return doc
            last = (status, body[:300])
        except OSError as exc:
            last = exc
        time.sleep(1)
    logs = compose(api, env, "logs", "--no-color", "--tail", "40").stdout
    pytest.fail(f"the panel did not answer /healthz in {seconds:.0f} s (last: {last!r}); logs:\n{logs}")


@pytest.mark.timeout(1800)  # a cold run (a fresh machine) bootstraps Debian and builds every image
def test_control_plane_builds_and_serves(plane_engine: Engine, tmp_path: Path) -> None:
    started = time.monotonic()
    hpctl = f"{sys.executable} -m engine.cli --root {ROOT} --instance {plane_engine.instance}"
    build = subprocess.run(
        [str(REPO / "docker" / "build.sh")],
        env={**_host_env(), "HPCTL": hpctl, "HOSTPANEL_DOCKER_CACHE": str(CACHE)},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert build.returncode == 0, f"docker/build.sh failed:\n{build.stdout}\n{build.stderr}"
    tags = {tag for image in plane_engine.images.list() for tag in image.repo_tags}
    assert {f"hostpanel/{name}" for name in IMAGES} <= tags
    built = time.monotonic()

    secrets_dir = tmp_path / "secrets"
    subprocess.run([str(REPO / "docker" / "secrets.sh"), str(secrets_dir)], check=True, timeout=30)
    redis_password = (secrets_dir / "redis.env").read_text().strip().split("=", 1)[1]
    port = free_port()
    env = {
        "COMPOSE_PROJECT_NAME": f"hpcp{secrets.token_hex(3)}",
        "HOSTPANEL_SECRETS": str(secrets_dir),
        "HOSTPANEL_PORT": str(port),
        "HOSTPANEL_HTTP_WORKERS": "1",
    }
    with serving_api(plane_engine) as api:
        try:
            compose(api, env, "up", "-d")
            doc = wait_healthy(port, api, env)
            assert doc["status"] == "ok" and doc["database"] == "ok", doc
            # ... on PostgreSQL, the compose file's, not an SQLite file in the container
            vendor = compose(
                api,
                env,
                *("exec", "-T", "web", "hostpanel", "manage.py", "shell", "-c"),
                "from django.db import connection; print(connection.vendor)",
            ).stdout
            assert vendor.strip().splitlines()[-1] == "postgresql"  # after "N objects imported"
            # the servers (and the scheduler's host checks) run as the image's users, not as root
            served_by = (("web", "hostpanel"), ("ws", "hostpanel"), ("scheduler", "hostpanel"))
            for service, user in (*served_by, ("postgres", "postgres")):
                status = compose(api, env, "exec", "-T", service, "cat", "/proc/1/status").stdout
                uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
                passwd = compose(api, env, "exec", "-T", service, "getent", "passwd", user).stdout
                assert uid == passwd.split(":")[2] != "0", (service, uid)
            # a page through Caddy that is not the health check: the login page
            status, _body = get(port, "/login/")
            assert status == 200
            # /ws/ goes to daphne (gunicorn has no such page: 404), which refuses an anonymous
            # log stream before the handshake completes
            status, _body = get(port, "/ws/logs/1/", WEBSOCKET_HANDSHAKE)
            assert status == 403

            # Redis: no client gets in without the panel's user and password
            anonymous = compose(api, env, "exec", "-T", "redis", "redis-cli", "ping").stdout
            assert "NOAUTH" in anonymous and "PONG" not in anonymous
            wrong = compose(
                api,
                env,
                *("exec", "-T", "redis", "redis-cli", "--no-auth-warning"),
                *("--user", "hostpanel", "--pass", "wrong", "ping"),
            ).stdout
            assert "PONG" not in wrong
            right = compose(
                api,
                env,
                *("exec", "-T", "redis", "redis-cli", "--no-auth-warning"),
                *("--user", "hostpanel", "--pass", redis_password, "ping"),
            ).stdout
            assert right.strip() == "PONG"
            up = time.monotonic()
        finally:
            compose(api, env, "down", "-v", "--timeout", "5")
    print(f"control plane: build {built - started:.1f} s, up to healthy {up - built:.1f} s")
