"""Redis requires a password: the one `make run` starts (scripts/redis.sh) and the tests' own.

A client without the password (what a container on the LAN would be) gets
NOAUTH and can neither read nor inject Celery tasks.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from hostpanel.config import load_redis_password, redis_url
from tests.stack import REPO, free_port, redis_ping, redis_server, stop_process, wait_for


@pytest.fixture()
def redis_binary() -> str:
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; `make install` installs it")
        pytest.skip("needs redis-server (`make install`)")
    return server


def _refuses_without_password(url: str) -> None:
    parts = urlsplit(url)
    assert parts.password and parts.port
    assert redis_ping(parts.port).startswith(b"-NOAUTH")
    assert redis_ping(parts.port, "guess") == b"-AUTH failed"
    anonymous = redis.Redis(host="127.0.0.1", port=parts.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.lpush("host.local", b"{}")  # a forged Celery task
    assert redis.Redis.from_url(url, socket_timeout=5).ping() is True


def test_the_tests_redis_requires_a_password(tmp_path: Path, redis_binary: str) -> None:
    with redis_server(tmp_path) as url:
        _refuses_without_password(url)
        assert stat.S_IMODE((tmp_path / "redis.conf").stat().st_mode) == 0o600


@pytest.fixture()
def run_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment scripts/redis.sh sees from `make run`, in a scratch var dir; stops its Redis."""
    var = tmp_path / "var"
    for d in ("run", "redis", "log"):
        (var / d).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"BIN": str(REPO / ".venv" / "bin"), "VAR_DIR": str(var), "RUN_DIR": str(var / "run")}
    env["REDIS_PORT"] = str(free_port())
    yield env
    pidfile = var / "run" / "redis.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        wait_for(lambda: redis_ping(int(env["REDIS_PORT"])) == b"", 10, "redis-server to stop")


def _source_redis_sh(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source scripts/redis.sh; echo "REDIS_URL=$REDIS_URL"'],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_run_starts_redis_with_a_generated_password(run_env: dict[str, str], redis_binary: str) -> None:
    var = Path(run_env["VAR_DIR"])
    proc = _source_redis_sh(run_env)
    assert proc.returncode == 0, proc.stderr
    password = (var / "redis_password").read_text().strip()
    assert len(password) == 64
    assert stat.S_IMODE((var / "redis_password").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "redis" / "redis.conf").stat().st_mode) == 0o600
    url = proc.stdout.strip().splitlines()[-1].removeprefix("REDIS_URL=")
    assert url == f"redis://:{password}@127.0.0.1:{run_env['REDIS_PORT']}/0"
    _refuses_without_password(url)
    again = _source_redis_sh(run_env)  # `make run` twice: the same password, no second server
    assert again.returncode == 0 and "already answering" in again.stdout
    assert again.stdout.strip().endswith(url)


def test_make_run_refuses_a_redis_without_password(run_env: dict[str, str], redis_binary: str) -> None:
    port = run_env["REDIS_PORT"]
    open_redis = subprocess.Popen(
        [redis_binary, "--port", port, "--bind", "127.0.0.1", "--save", ""], stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: redis_ping(int(port)) == b"+PONG", 10, "redis-server to answer")
        proc = _source_redis_sh(run_env)
        assert proc.returncode != 0 and "answers without a password" in proc.stderr
    finally:
        stop_process(open_redis, timeout=10)


def test_panel_default_redis_url_carries_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = redis_url(tmp_path)
    assert url == f"redis://:{load_redis_password(tmp_path)}@127.0.0.1:6379/0"
    assert stat.S_IMODE((tmp_path / "redis_password").stat().st_mode) == 0o600
    monkeypatch.setenv("REDIS_URL", "redis://:given@redis.example:6379/1")
    assert redis_url(tmp_path) == "redis://:given@redis.example:6379/1"
