"""Serving an engine's Docker Engine API on a temporary socket, and driving it with real clients.

``serving_api(engine)`` runs the operator's API (the same router ``hpctl docker serve`` uses) on a
short temporary unix socket from a thread; :class:`DockerAPI` runs the stock docker CLI against it
(its own ``DOCKER_CONFIG``) and sends raw requests for what no client would send.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dockerapi.daemon import operator_router
from engine.dockerapi.http import UnixServer, serve_in_thread
from engine.engine import Engine

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
NOBODY = 65534


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


@dataclass
class DockerAPI:
    """One served API: its socket, engine, and a client config directory."""

    socket: Path
    engine: Engine
    config: Path

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value for this socket."""
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """The environment a client needs: DOCKER_HOST and a config dir of its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.config))
        return env

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120, prefix: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Run the stock docker CLI; ``check`` fails the test on a non-zero exit, with its output."""
        result = subprocess.run(
            [*prefix, DOCKER, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        """A raw request; the status and the decoded JSON answer (or the raw bytes)."""
        conn = _UnixConnection(str(self.socket), timeout=60)
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, f"/v1.44{path}", body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(payload) if payload else None
        except ValueError:
            return response.status, payload

    def containers(self) -> list[dict[str, Any]]:
        """Every container, as ``GET /containers/json?all=1`` lists them."""
        status, items = self.request("GET", "/containers/json?all=1")
        assert status == 200, items
        assert isinstance(items, list)
        return items


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("watch-", "health-"))]


@contextmanager
def serving_api(engine: Engine) -> Iterator[DockerAPI]:
    """The operator's API over ``engine`` on a fresh socket; removes every container afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="hpd"))
    directory.chmod(0o755)  # only the socket's own mode keeps other users out
    config = directory / "config"
    config.mkdir()
    server = UnixServer(directory / "docker.sock", operator_router(engine))
    thread = serve_in_thread(server)
    api = DockerAPI(directory / "docker.sock", engine, config)
    try:
        yield api
    finally:
        try:
            for item in api.containers():
                api.request("DELETE", f"/containers/{item['Id']}?force=1&v=1")
            deadline = time.monotonic() + 30
            while _watchers() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            shutil.rmtree(directory, ignore_errors=True)
