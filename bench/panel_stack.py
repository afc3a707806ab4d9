"""The panel stack the panel benchmarks start in a scratch directory, and its small helpers.

``panel_stack()`` starts a private redis-server, migrates a fresh SQLite
database (or, with ``database="postgres"``, a private PostgreSQL 15: tests/pgserver.py),
seeds the demo tenant with an API token, and runs one host agent ``bench`` enrolled as
`make run` enrolls its own (``manage.py enroll_local``: no database, no panel Redis URL or secret
keys in its environment; ``manage.py watchhosts`` places for it) on a scratch engine root, and the
panel as `make run` serves it; everything, containers
included, is stopped and removed on the way out (also on SIGTERM, e.g. from
``timeout``). Needs root (real containers).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.engine import Engine
from engine.runtime.model import Container

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); exit naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM ``proc`` and wait for it; SIGKILL when it does not end within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py ARGS`` in the repository with ``env``; what it printed (exit, with its errors,
    when it fails)."""
    command = [sys.executable, "manage.py", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in the repository with output to ``log``; stopped on the way out."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop_process(proc)


class Api:
    """The panel's REST API below ``base``, called with an API token."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def answers(self) -> bool:
        """Whether the panel answers a listing of apps."""
        try:
            self.call("GET", "/apps/")
            return True
        except OSError:
            return False


@dataclass
class PanelStack:
    """What ``panel_stack()`` started: its engine, database, URLs and the demo tenant's API."""

    scratch: Path
    env: dict[str, str]
    overrides: dict[str, str]
    token: str
    base: str
    api: Api
    engine: Engine
    db: Any  # sqlite3 or psycopg (autocommit) connection: db.execute(sql).fetchone()

    def running(self, name: str) -> Container | None:
        """The running container called ``name``, if there is one."""
        return next((c for c in self.engine.list() if c.name == name and c.is_running), None)

    def exists(self, name: str) -> bool:
        """Whether a container called ``name`` exists (in any state)."""
        return any(c.name == name for c in self.engine.list(all=True))

    def setup_django(self) -> None:
        """Point this process's Django at the stack's database (for ORM work and sessions)."""
        os.environ.update(self.overrides)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")
        import django

        django.setup()


@contextmanager
def panel_stack(
    name: str,
    extra_env: dict[str, str] | None = None,
    agent_args: list[str] | None = None,
    server: str = "serve",
    database: str = "sqlite",
    address: str = "127.0.0.1",
    local_agent: bool = True,
) -> Iterator[PanelStack]:
    """Start the panel stack in a scratch directory ``hpbench-<name>-*``; tear it all down afterwards.

    ``extra_env`` is added to the panel's environment, ``agent_args`` to the host
    agent's command line (e.g. ``--cpus``). ``server``: ``"serve"`` serves the panel as
    `make run` does (hostpanel/serve.py: Caddy, gunicorn, daphne), ``"daphne"`` with one
    daphne for everything (as before issue 16). ``database``: ``"sqlite"`` (a file in the
    scratch directory) or ``"postgres"`` (a private PostgreSQL 15 there, tests/pgserver.py).
    ``address``: where other hosts reach the panel (e.g. an underlay bridge's, bench/underlay.py):
    Redis listens there too and joined agents are told it (``HOSTPANEL_AGENT_REDIS_ADDRESS``).
    ``local_agent=False``: no host agent of its own (the hosts are others, joined to it).
    """
    from cryptography.fernet import Fernet

    scratch = Path(tempfile.mkdtemp(prefix=f"hpbench-{name}-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    scratch.chmod(0o755)
    redis_port, http_port = free_port(), free_port()
    redis_password = secrets.token_hex(32)  # Redis always requires a password, as `make run` sets up
    root, instance = scratch / "engine", f"hpb{name[0]}-{secrets.token_hex(3)}"
    overrides = {
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "REDIS_URL": f"redis://:{redis_password}@127.0.0.1:{redis_port}/0",
        "HOSTPANEL_VAR_DIR": str(scratch / "var"),
        "HOSTPANEL_SECRET_KEYS": Fernet.generate_key().decode(),
        "HOSTPANEL_LOG_LEVEL": "WARNING",
        # VNIs of its own: the kernel refuses a second VXLAN of a VNI on port 4789, and every fresh
        # database starts at the range's first (another stack or test on this machine may hold it)
        "HOSTPANEL_NETWORK_VNI_RANGE": f"{(first := 200000 + secrets.randbelow(700) * 1000)}-{first + 999}",
        **(extra_env or {}),
    }
    binds = ["127.0.0.1"]
    if address != binds[0]:  # other hosts reach the panel (its HTTPS front) and Redis there
        binds.append(address)
        overrides["HOSTPANEL_ALLOWED_HOSTS"] = f"127.0.0.1,localhost,{address}"
        overrides["HOSTPANEL_AGENT_REDIS_ADDRESS"] = f"{address}:{redis_port}"
    env = os.environ | overrides
    python = sys.executable
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # clean up on `timeout` too
    engine = Engine(root=root, instance=instance)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        stack.callback(engine.network_teardown)  # after the containers: bridges and nft tables too
        stack.callback(lambda: [engine.remove(c.id, force=True) for c in engine.list(all=True)])
        if database == "postgres":
            from tests.pgserver import PostgresServer

            postgres = PostgresServer(scratch / "postgres")
            stack.callback(postgres.stop)
            overrides["DATABASE_URL"] = postgres.start()
            env = os.environ | overrides
        if local_agent:
            engine.images.bootstrap_busybox()
        redis = [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--save", ""]
        redis += ["--requirepass", redis_password]
        stack.enter_context(process([*redis, "--bind", *binds], env, scratch / "redis.log"))
        manage(env, "migrate", "-v0")
        seeded = manage(env, "seed_demo", "--token")
        token = next(w for w in seeded.split() if w.startswith("hp_"))
        if local_agent:
            from bench.enroll import joined_env  # it imports this module

            state = scratch / "agent-state"
            manage(
                env,
                "enroll_local",
                "--name",
                "bench",
                "--state-dir",
                str(state),
                "--panel",
                f"http://127.0.0.1:{http_port}",
            )
            stack.enter_context(
                process(
                    [python, "manage.py", "watchhosts", "--interval", "0.5"], env, scratch / "watchhosts.log"
                )
            )
            agent = [python, "manage.py", "hostagent", "--state-dir", str(state), "--engine-root", str(root)]
            agent += ["--instance", instance, *(agent_args or []), "--loglevel", "WARNING"]
            agent_env = joined_env(env, scratch / "agent-var", state)
            stack.enter_context(process(agent, agent_env, scratch / "agent.log"))
        serve = [python, "-m", "hostpanel.serve", "--host", "127.0.0.1", "--port", str(http_port)]
        if server == "daphne":
            serve.append("--single")
        stack.enter_context(process(serve, env, scratch / "panel.log"))
        db = _connect(overrides["DATABASE_URL"], scratch)
        stack.callback(db.close)
        if local_agent:
            up = "select 1 from hosts_host where state='up'"
            wait_for(lambda: db.execute(up).fetchone(), 60, "the agent", 0.2)
        base = f"http://127.0.0.1:{http_port}"
        api = Api(f"{base}/api/v1/tenants/demo", token)
        wait_for(api.answers, 30, "the panel", 0.2)
        yield PanelStack(scratch, env, overrides, token, base, api, engine, db)


def _connect(url: str, scratch: Path) -> Any:
    """A connection of the bench's own to the stack's database, each statement seeing the latest."""
    if url.startswith("postgres"):
        import psycopg

        return psycopg.connect(url, autocommit=True)
    return sqlite3.connect(scratch / "db.sqlite3", timeout=30)
