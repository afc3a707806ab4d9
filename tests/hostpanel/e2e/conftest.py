"""End-to-end fixtures: a real Redis, real host agents (subprocesses) and real engines.

The test database is a file (settings: ``DATABASES['default']['TEST']['NAME']``)
so the agents, started with ``DATABASE_URL`` pointing at it, see what the test
writes; tests use ``transactional_db`` so their writes are committed. Every
agent is stopped and every container removed at teardown.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from engine.engine import Engine

REPO = Path(__file__).resolve().parents[3]
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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOSTPANEL_TEST_REDIS_URL`` if given, else a private redis-server on a free port."""
    given = os.environ.get("HOSTPANEL_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; `make install` installs it")
        pytest.skip("needs redis-server (`make install`)")
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _pingable(port), 10, "redis-server to answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pingable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def celery_to(redis_url: str) -> Iterator[str]:
    """Point this process's Celery app (sending tasks, reading results) at the test Redis."""
    from hostpanel.celery import app

    def forget_connections() -> None:
        app._pool = None
        app._local = threading.local()  # holds the result backend
        app.amqp._producer_pool = None

    old = (app.conf.broker_url, app.conf.result_backend)
    app.conf.broker_url = app.conf.result_backend = redis_url
    forget_connections()
    yield redis_url
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
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


@pytest.fixture
def agents(
    privileged: None, transactional_db: None, celery_to: str, tmp_path: Path, settings: Any
) -> Iterator[Callable[[str], Agent]]:
    """Start host agents by name (each with its own engine root and instance); all cleaned up after."""
    settings.HOSTPANEL_HOST_GRACE_SECONDS = GRACE_SECONDS
    db_file = connection.settings_dict["NAME"]
    assert db_file and "memory" not in str(db_file), "the e2e tests need a file test database"
    started: list[Agent] = []

    def start(name: str) -> Agent:
        root = tmp_path / f"engine-{name}"
        instance = f"hpe2e-{secrets.token_hex(3)}"
        engine = Engine(root=root, instance=instance)
        engine.images.bootstrap_busybox()
        env = os.environ | {
            "DATABASE_URL": f"sqlite:///{db_file}",
            "REDIS_URL": celery_to,
            "HOSTPANEL_VAR_DIR": str(tmp_path / "var"),
            "HOSTPANEL_SECRET_KEYS": settings.HOSTPANEL_SECRET_KEYS,
            "HOSTPANEL_HOST_GRACE_SECONDS": str(GRACE_SECONDS),
            "HOSTPANEL_RESTART_BACKOFF_BASE": "0.5",
        }
        agent = Agent(name, engine, root, instance, None, tmp_path / f"agent-{name}.log", env)
        agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
    for agent in started:
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
