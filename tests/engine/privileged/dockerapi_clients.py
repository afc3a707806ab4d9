"""Helpers for the Docker API tests (no tests here): the operator API on a tmp socket, driven by
the stock docker CLI (its own DOCKER_CONFIG, never ~/.docker) and by docker-py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.dockerapi.daemon import operator_router
from engine.dockerapi.http import UnixServer, serve_in_thread
from engine.engine import Engine

DOCKER = "/usr/local/bin/docker"


@dataclass(frozen=True)
class DockerCLI:
    """The docker CLI pointed at one socket."""

    socket: Path
    config: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return {**env, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config)}

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` (exit status not checked)."""
        return subprocess.run(
            [DOCKER, *args],
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,  # a prompt must not wait on the terminal
            capture_output=True,
            text=True,
            timeout=300,
            env={**self.env, **(env or {})},
            cwd=cwd,
        )

    def ok(self, *args: str, **kwargs: object) -> str:
        """Run ``docker ARGS``, require success, return stdout."""
        proc = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert proc.returncode == 0, f"docker {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def fails(self, *args: str, **kwargs: object) -> str:
        """Run ``docker ARGS``, require failure, return stderr."""
        proc = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert proc.returncode != 0, f"docker {' '.join(args)} should have failed: {proc.stdout}"
        return proc.stderr


@contextmanager
def operator_api(engine: Engine, workdir: Path) -> Iterator[DockerCLI]:
    """The operator's API for ``engine`` on ``workdir/docker.sock``, served from a thread."""
    if not Path(DOCKER).exists():
        pytest.fail(f"{DOCKER} (the stock docker CLI) is missing on this machine")
    socket = workdir / "docker.sock"
    server = UnixServer(socket, operator_router(engine))
    thread = serve_in_thread(server)
    config = workdir / "docker-config"
    config.mkdir(exist_ok=True)
    try:
        yield DockerCLI(socket, config)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
