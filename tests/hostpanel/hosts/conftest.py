"""Fixtures of the host tests: enrolled hosts with keys and API tokens the test holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host
from tests.hostpanel.hosts.enrolled_hosts import Agent, pem
from tests.hostpanel.hosts.fake_engine import NetEngine
from tests.stack import redis_server


@pytest.fixture(scope="module")
def redis_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis-sealed")) as url:
        yield url


@pytest.fixture
def enrolled(redis_admin_url: str, settings: Any) -> Iterator[dict[str, tuple[X25519PrivateKey, str]]]:
    """Hosts sa and sb registered with keys this test holds: name -> (private key, API token)."""
    settings.REDIS_URL = redis_admin_url
    settings.HOSTPANEL_PUBLIC_URL = "https://panel.example"
    hosts = {}
    for name in ("sa", "sb"):
        key = X25519PrivateKey.generate()
        creds = enrollment.register(enrollment.add_host(None, name).token, pem(key))
        Host.objects.filter(name=name).update(state="up", cpu_millis=4000, memory_bytes=8 * 1024**3)
        hosts[name] = (key, creds.api_token)
    yield hosts
    redis.Redis.from_url(redis_admin_url).flushall()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket listening on 127.0.0.1 (a container's port, to the in-memory engine's probes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


@pytest.fixture
def agent(
    enrolled: dict[str, tuple[X25519PrivateKey, str]], tmp_path: Path, django_assert_num_queries: Any
) -> Agent:
    """Host sa's agent, on an in-memory engine, against the real internal API."""
    return Agent(enrolled["sa"][1], NetEngine(), tmp_path, django_assert_num_queries)
