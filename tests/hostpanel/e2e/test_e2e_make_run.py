"""`make run` end to end: scripts/run.sh itself against a private var directory (its own Redis,
Caddy, SQLite database, engine root and free ports), then scripts/stop.sh and run.sh again.

Its local host agent is enrolled (hostpanel/agent/local.py) and runs WITHOUT the database URL, the
panel's REDIS_URL and Redis password, or the panel's secret keys (read from the running process);
it serves an app deployed through the API, reachable through the edge proxy; a second run reuses
the credentials (same key, same token, one host).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from engine.engine import Engine
from tests.stack import REPO, free_port, stop_process, unmount_below, wait_for

pytestmark = pytest.mark.usefixtures("privileged")

PANEL_ONLY = ("DATABASE_URL", "REDIS_URL", "HOSTPANEL_SECRET_KEY", "HOSTPANEL_SECRET_KEYS")


@dataclass
class Run:
    """One `make run`: its environment, its output and its process (the panel, once it execs)."""

    env: dict[str, str]
    var: Path
    proc: subprocess.Popen[bytes]
    out: Path

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}{path}"

    def token(self) -> str:
        match = re.search(r"demo API token: (\S+)", self.text())
        assert match, self.text()
        return match.group(1)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Token {self.token()}", "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url(path), data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [str(REPO / ".venv/bin/python"), "manage.py", *args],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout


def get(url: str, host: str = "") -> str:
    headers = {"Host": host} if host else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return str(r.read().decode())
    except (urllib.error.URLError, OSError):
        return ""


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """run.sh's environment: everything under ``tmp_path``, free ports, the panel's own secrets."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOSTPANEL_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env = base | {
        "HOSTPANEL_VAR_DIR": str(tmp_path / "var"),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'db.sqlite3'}",
        "HOSTPANEL_SECRET_KEY": secrets.token_urlsafe(50),
        "HOSTPANEL_SECRET_KEYS": Fernet.generate_key().decode(),
        "HOSTPANEL_ROOT": str(tmp_path / "engine"),
        "HOSTPANEL_INSTANCE": f"hpmr{secrets.token_hex(3)}",
        "HOSTPANEL_DOCKER_SOCKET": str(tmp_path / "docker.sock"),
        "HOSTPANEL_DOCKER_API_PORT": str(free_port()),
        "HOSTPANEL_PROXY_HTTP_PORT": str(free_port()),
        "HOSTPANEL_PROXY_HTTPS_PORT": str(free_port()),
        "HOSTPANEL_HTTP_WORKERS": "1",
    }
    try:
        yield env
    finally:
        subprocess.run(["bash", "scripts/stop.sh"], cwd=REPO, env=env, capture_output=True, timeout=120)
        engine = Engine(root=Path(env["HOSTPANEL_ROOT"]), instance=env["HOSTPANEL_INSTANCE"])
        for container in engine.list(all=True):
            engine.remove(container.id, force=True)
        for network in engine.network_list():
            engine.network_remove(network.name)
        unmount_below(Path(env["HOSTPANEL_ROOT"]))


def make_run(env: dict[str, str], out: Path) -> Run:
    """scripts/run.sh until the panel answers and the local agent is through its start."""
    agent_log = Path(env["HOSTPANEL_VAR_DIR"]) / "log" / "hostagent.log"
    before = agent_log.stat().st_size if agent_log.exists() else 0
    with out.open("wb") as f:
        proc = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT
        )
    run = Run(env, Path(env["HOSTPANEL_VAR_DIR"]), proc, out)
    wait_for(lambda: proc.poll() is not None or get(run.url("/healthz")), 240, f"make run\n{run.text()}")
    assert proc.poll() is None, run.text()

    def started() -> bool:  # it logs "(no database)" once the panel answered its start
        return agent_log.exists() and "(no database)" in agent_log.read_bytes()[before:].decode(
            errors="replace"
        )

    wait_for(started, 90, f"the agent to start\n{agent_log.read_bytes()[before:][-3000:]!r}")
    return run


def agent_environ(run: Run) -> list[bytes]:
    pid = int((run.var / "run" / "hostagent.pid").read_text())
    assert b"hostagent" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_make_run_enrolls_its_agent_which_runs_without_the_panels_secrets(
    make_env: dict[str, str], tmp_path: Path
) -> None:
    run = make_run(make_env, tmp_path / "run1.out")
    assert "host local: enrolled (no credentials yet)" in run.text()
    state = run.var / "agent"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert (state / "host.key").stat().st_mode & 0o777 == 0o600

    # the running agent holds none of the panel's secrets: not by name, not by value
    environ = agent_environ(run)
    assert not [e for e in environ if e.startswith(tuple(f"{k}=".encode() for k in PANEL_ONLY))]
    redis_password = (run.var / "redis_password").read_text().strip()
    panel_secrets = [redis_password, make_env["HOSTPANEL_SECRET_KEY"], make_env["HOSTPANEL_SECRET_KEYS"]]
    panel_secrets.append(make_env["DATABASE_URL"])
    assert not [s for s in panel_secrets if any(s.encode() in e for e in environ)]
    assert b"HOSTPANEL_AGENT_STATE_DIR=" + str(state).encode() in environ
    agent_var = Path(
        next(e for e in environ if e.startswith(b"HOSTPANEL_VAR_DIR=")).split(b"=", 1)[1].decode()
    )
    assert (
        agent_var != run.var
        and (agent_var / "secret_key").read_text().strip() != make_env["HOSTPANEL_SECRET_KEY"]
    )
    creds = json.loads((state / "credentials.json").read_text())
    assert creds["name"] == "local" and creds["redis_url"].startswith("redis://host-local:")
    assert redis_password not in creds["redis_url"]

    assert run.manage("host", "list").split() == ["local", "up", "enrolled"]

    # an app deployed through the API runs on it, and answers through this host's edge proxy
    page = "served-by-the-enrolled-agent"
    status, body = run.api(
        "POST",
        "/api/v1/tenants/demo/apps/",
        {
            "name": "web",
            "image": "busybox:latest",
            "command": ["sh", "-c", f"mkdir -p /w && echo {page} >/w/index.html && httpd -f -p 8080 -h /w"],
            "http_port": 8080,
        },
    )
    assert status == 201, body
    proxy = f"http://127.0.0.1:{make_env['HOSTPANEL_PROXY_HTTP_PORT']}/"
    wait_for(
        lambda: page in get(proxy, "web-demo.localhost"),
        120,
        f"the app\n{run.api('GET', '/api/v1/tenants/demo/apps/web/')}",
    )
    replicas = run.api("GET", "/api/v1/tenants/demo/apps/web/")[1]
    assert "local" in json.dumps(replicas)

    # `make stop`, then `make run` again: the same enrollment
    key, credentials = (state / "host.key").read_bytes(), (state / "credentials.json").read_bytes()
    stop = subprocess.run(
        ["bash", "scripts/stop.sh"], cwd=REPO, env=make_env, capture_output=True, text=True, timeout=120
    )
    assert "host agent: stopped" in stop.stdout and "host checks: stopped" in stop.stdout, stop.stdout
    stop_process(run.proc)
    again = make_run(make_env, tmp_path / "run2.out")
    assert "host local: already enrolled (credentials reused)" in again.text()
    assert (state / "host.key").read_bytes() == key and (
        state / "credentials.json"
    ).read_bytes() == credentials
    assert again.manage("host", "list").split() == ["local", "up", "enrolled"]  # one host, still enrolled
    assert not [e for e in agent_environ(again) if e.startswith(tuple(f"{k}=".encode() for k in PANEL_ONLY))]
    wait_for(lambda: page in get(proxy, "web-demo.localhost"), 120, "the app after the second make run")
