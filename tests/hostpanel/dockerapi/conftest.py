"""The tenants' Docker API door on a free port over the test database, and the stock docker CLI
pointed at it with a member's certificate (a private DOCKER_CONFIG per client)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.tls
import pytest

from engine.dockerapi.http import serve_in_thread
from hostpanel.audit.services import Actor
from hostpanel.dockerapi.certs import IssuedCertificate, issue_certificate
from hostpanel.dockerapi.server import build_server
from hostpanel.tenants.models import Tenant
from tests.hostpanel.e2e.conftest import agents, celery_to, live_tenant, redis_url

# the end-to-end fixtures (a real Redis and host agents), for test_door_e2e.py
__all__ = ["agents", "celery_to", "live_tenant", "redis_url"]

DOCKER = "/usr/local/bin/docker"


@dataclass
class Door:
    """The running door: where it listens."""

    port: int

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


@contextmanager
def serving() -> Iterator[Door]:
    """A door on 127.0.0.1 and a free port, with the settings as they are now."""
    server = build_server("127.0.0.1", 0)
    serve_in_thread(server)
    try:
        yield Door(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def door(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[Door]:
    """The door (client certificates required); its CA in a temporary directory."""
    settings.HOSTPANEL_DOCKER_API_DIR = tmp_path / "dockerapi"
    settings.HOSTPANEL_DOCKER_API_PORT = 0
    with serving() as running:
        yield running


@dataclass
class Client:
    """The docker CLI as one member with one certificate."""

    door: Door
    directory: Path
    issued: IssuedCertificate | None = None

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.directory),
            "DOCKER_CONFIG": str(self.directory / "config"),
            "DOCKER_HOST": self.door.host,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(self.directory),
        }

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER, *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok(self, *args: str, timeout: float = 120) -> str:
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}{result.stdout}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))

    def docker_py(self) -> docker.DockerClient:
        """docker-py with the same certificate."""
        d = self.directory
        tls = docker.tls.TLSConfig(
            client_cert=(str(d / "cert.pem"), str(d / "key.pem")), ca_cert=str(d / "ca.pem"), verify=True
        )
        client = docker.DockerClient(base_url=f"https://127.0.0.1:{self.door.port}", tls=tls, version="1.44")
        # requests prefers $REQUESTS_CA_BUNDLE (set on these machines) over the session's CA: not here
        client.api.trust_env = False
        return client


def write_pems(directory: Path, ca_pem: str, cert_pem: str, key_pem: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config").mkdir(exist_ok=True)
    for name, text in (("ca.pem", ca_pem), ("cert.pem", cert_pem), ("key.pem", key_pem)):
        (directory / name).write_text(text)
    (directory / "key.pem").chmod(0o600)


@pytest.fixture
def docker_as(door: Door, tmp_path: Path) -> Callable[[Any, Tenant], Client]:
    """``docker_as(user, tenant)``: the docker CLI with a certificate ``user`` issued for themself."""
    count = iter(range(1000))

    def make(user: Any, tenant: Tenant, name: str = "laptop") -> Client:
        issued = issue_certificate(Actor(user=user), tenant, name)
        directory = tmp_path / f"client-{next(count)}"
        write_pems(directory, issued.ca_pem, issued.cert_pem, issued.key_pem)
        return Client(door, directory, issued)

    return make
