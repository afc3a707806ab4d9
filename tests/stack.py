"""Pieces of the real stack that the end-to-end and browser tests both start.

Plain helpers (no fixtures): a private redis-server, this process's Celery app
pointed at it, host agent subprocesses with their own engines, and the
clean-up that leaves no container, network, volume or mount behind. The
fixtures that use them live in tests/hostpanel/e2e/conftest.py (one test at a
time) and tests/browser/conftest.py (one stack for the whole package).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from engine.engine import Engine

REPO = Path(__file__).resolve().parents[1]
GRACE_SECONDS = 3.0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 20
) -> None:
    """Signal ``proc`` and wait for it; SIGKILL when it does not end within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_daphne(endpoint: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """daphne serving ``hostpanel.asgi`` on ``endpoint`` (e.g. ``-b HOST -p PORT``), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "daphne", *endpoint, "hostpanel.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_panel(host: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The panel as `make run` serves it (``python -m hostpanel.serve``: Caddy in front, gunicorn
    for HTTP, daphne for /ws/) on ``host:port``, output to ``log``; SIGTERM stops all three.

    Two gunicorn workers unless ``env`` sets ``HOSTPANEL_HTTP_WORKERS`` (tests share the machine).
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hostpanel.serve", "--host", host, "--port", str(port)],
            cwd=REPO,
            env={"HOSTPANEL_HTTP_WORKERS": "2"} | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def redis_server(directory: Path, binds: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[str]:
    """``HOSTPANEL_TEST_REDIS_URL`` if given, else a private redis-server on a free port (its URL).

    Like the one `make run` starts, it requires a password (``requirepass`` in a
    0600 config file); the URL carries it. It listens on ``binds`` (the URL names the first;
    asking for more than loopback always starts a private one).
    """
    given = os.environ.get("HOSTPANEL_TEST_REDIS_URL")
    if given and binds == ("127.0.0.1",):
        yield given
        return
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; `make install` installs it")
        pytest.skip("needs redis-server (`make install`)")
    port, password = free_port(), secrets.token_hex(32)
    config = directory / "redis.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'port {port}\nbind {" ".join(binds)}\ndir {directory}\nsave ""\nrequirepass {password}\n')
    proc = subprocess.Popen([server, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis_ping(port, password) == b"+PONG", 10, "redis-server to answer")
        yield f"redis://:{password}@{binds[0]}:{port}/0"
    finally:
        stop_process(proc, timeout=10)


def redis_ping(port: int, password: str | None = None) -> bytes:
    """What Redis on 127.0.0.1:``port`` answers to PING (after AUTH with ``password``), b"" if nothing."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            if password is not None:
                s.sendall(f"AUTH {password}\r\n".encode())
                if not s.recv(64).startswith(b"+OK"):
                    return b"-AUTH failed"
            s.sendall(b"PING\r\n")
            return s.recv(64).strip()
    except OSError:
        return b""


@contextmanager
def celery_pointed_at(redis_url: str) -> Iterator[str]:
    """Point this process's Celery app (sending tasks, reading results) at ``redis_url``."""
    from hostpanel.celery import app

    def forget_connections() -> None:
        app._pool = None
        app._local = threading.local()  # holds the result backend
        app.amqp._producer_pool = None

    old = (app.conf.broker_url, app.conf.result_backend)
    app.conf.broker_url = app.conf.result_backend = redis_url
    forget_connections()
    try:
        yield redis_url
    finally:
        app.conf.broker_url, app.conf.result_backend = old
        forget_connections()


@dataclass
class Agent:
    """A host agent subprocess and its engine."""

    name: str
    engine: Engine
    root: Path
    instance: str
    proc: subprocess.Popen[bytes] | None
    log: Path
    env: dict[str, str]

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        args = [
            sys.executable,
            "manage.py",
            "hostagent",
            "--name",
            self.name,
            "--engine-root",
            str(self.root),
            "--instance",
            self.instance,
            "--address",
            "127.0.0.1",  # published ports are reached on this machine's loopback
            "--heartbeat-interval",
            "0.5",
            "--reconcile-interval",
            "1",
            "--usage-interval",
            "1",
            "--cpus",
            "4",
            "--memory",
            str(8 * 1024**3),
            "--loglevel",
            "INFO",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)

    def log_tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


def shared_database_url() -> str:
    """``DATABASE_URL`` of the test database this process uses, for the panel subprocesses it starts
    (agents, daphne, gunicorn): SQLite's test file, or PostgreSQL's ``test_<name>`` database that
    pytest-django made (tests/pgserver.py). Fails on an in-memory SQLite, which nobody else sees."""
    from django.db import connection

    params = connection.settings_dict
    name = str(params["NAME"])
    assert on_test_database(), f"{name} is not the test database"
    if params["ENGINE"] == "django.db.backends.sqlite3":
        assert "memory" not in name, "panel subprocesses need a file test database"
        return f"sqlite:///{name}"
    user = quote(params["USER"], safe="")
    if params["PASSWORD"]:
        user += ":" + quote(params["PASSWORD"], safe="")
    options = f"?{urlencode(params['OPTIONS'])}" if params.get("OPTIONS") else ""
    return f"postgres://{user}@{params['HOST']}:{params['PORT']}/{quote(name, safe='')}{options}"


def on_test_database() -> bool:
    """Whether this process's connection uses the test database (pytest-django switched it)."""
    from django.db import connection
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX

    params = connection.settings_dict
    if params["ENGINE"] == "django.db.backends.sqlite3":
        return str(params["NAME"]) == str(params["TEST"]["NAME"])
    return str(params["NAME"]).startswith(TEST_DATABASE_PREFIX)


def panel_env(database_url: str, redis_url: str, var_dir: Path, secret_keys: str) -> dict[str, str]:
    """The environment of a panel subprocess (agent, ASGI server) sharing the test's database
    (``database_url``: :func:`shared_database_url`)."""
    return os.environ | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HOSTPANEL_VAR_DIR": str(var_dir),
        "HOSTPANEL_SECRET_KEYS": secret_keys,
        "HOSTPANEL_HOST_GRACE_SECONDS": str(GRACE_SECONDS),
        "HOSTPANEL_RESTART_BACKOFF_BASE": "0.5",
    }


def launch_agent(name: str, workdir: Path, env: dict[str, str]) -> Agent:
    """Start host agent ``name`` with a fresh engine (root under ``workdir``, busybox bootstrapped)."""
    root = workdir / f"engine-{name}"
    instance = f"hpe2e-{secrets.token_hex(3)}"
    engine = Engine(root=root, instance=instance)
    engine.images.bootstrap_busybox()
    agent = Agent(name, engine, root, instance, None, workdir / f"agent-{name}.log", env)
    agent.start()
    return agent


def remove_agent_leftovers(agent: Agent) -> None:
    """After ``agent`` stopped: remove its containers, networks, volumes and stray mounts."""
    for container in agent.engine.list(all=True):
        agent.engine.remove(container.id, force=True)
    for network in agent.engine.network_list():
        agent.engine.network_remove(network.name)
    for volume in agent.engine.volume_list():
        agent.engine.volume_remove(volume.name, force=True)
    assert agent.engine.list(all=True) == []
    unmount_below(agent.root)  # what a create killed with its agent leaves (an engine gap, reported)


def unmount_below(root: Path) -> None:
    """Lazily unmount whatever is still mounted below ``root``, deepest first."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(f"{root}/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@dataclass
class Caddy:
    """A real Caddy (Debian's), its admin API on a private unix socket; the host agent configures it."""

    admin_socket: Path
    data_dir: Path
    http_port: int
    https_port: int
    log: Path
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start ``caddy run`` (again: e.g. after a crash) with only its admin API; wait for it."""
        from hostpanel.edge.caddy import CaddyAdmin, CaddyError

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)

        def answers() -> bool:
            try:
                CaddyAdmin(self.admin_socket, timeout=1).config()
            except CaddyError:
                return False
            return True

        wait_for(answers, 20, f"caddy's admin API\n{self.log}")

    def agent_env(self, panel_url: str = "http://127.0.0.1:9") -> dict[str, str]:
        """What a host agent needs to configure this Caddy (``panel_url``: ask endpoint, tokens)."""
        return {
            "HOSTPANEL_CADDY_ADMIN": str(self.admin_socket),
            "HOSTPANEL_CADDY_DATA": str(self.data_dir),
            "HOSTPANEL_PROXY_HTTP_PORT": str(self.http_port),
            "HOSTPANEL_PROXY_HTTPS_PORT": str(self.https_port),
            "HOSTPANEL_PROXY_BIND": "127.0.0.1",
            "HOSTPANEL_EDGE_PANEL_URL": panel_url,
        }

    @property
    def root_cert(self) -> Path:
        """The internal CA's root (exists once Caddy made its first certificate authority)."""
        from hostpanel.edge.caddy import internal_root_cert

        return internal_root_cert(self.data_dir)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def caddy_server(directory: Path) -> Iterator[Caddy]:
    """Start ``caddy run`` with only its admin API (unix socket in a 0700 dir), as `make run` does.

    Its data, autosave and home are under ``directory``; the proxy ports are free ones the
    agent's config will listen on (127.0.0.1 only).
    """
    binary = shutil.which("caddy")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("caddy is missing; `make install` installs it")
        pytest.skip("needs caddy (`make install`)")
    directory.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="hpcaddy-"))  # 0700; short: a socket path has <= 107 bytes
    admin_socket = run_dir / "admin.sock"
    boot = directory / "boot.json"
    boot.write_text(f'{{"admin": {{"listen": "unix/{admin_socket}", "config": {{"persist": false}}}}}}')
    env = os.environ | {
        "HOME": str(directory),
        "XDG_CONFIG_HOME": str(directory / "config"),
        "XDG_DATA_HOME": str(directory / "xdg-data"),
    }
    command = [binary, "run", "--config", str(boot)]
    caddy = Caddy(
        admin_socket, directory / "data", free_port(), free_port(), directory / "caddy.log", command, env
    )
    try:
        caddy.start()
        yield caddy
    finally:
        stop_process(caddy.proc, timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)
