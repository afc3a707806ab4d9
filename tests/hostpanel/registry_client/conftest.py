"""The panel's registry served by a real ASGI server (daphne) for the engine's registry client.

daphne runs ``hostpanel.asgi`` on a random port against the test database
file (tests take ``transactional_db`` so their rows are committed and visible
to it) and a registry root in the test's temp dir.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from hostpanel.audit.services import Actor
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.stack import free_port, panel_env, shared_database_url, start_daphne, stop_process, wait_for


@dataclass(frozen=True)
class PanelRegistry:
    """The live panel: its base URL, its registry's host:port, and its server log."""

    url: str
    host: str
    log: Path


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True  # 401 from /v2/: it is up
    except OSError:
        return False


@pytest.fixture()
def panel_registry(transactional_db: None, tmp_path: Path, settings: Any) -> Iterator[PanelRegistry]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    registry_root = tmp_path / "panel-registry"
    settings.HOSTPANEL_REGISTRY_ROOT = registry_root
    settings.HOSTPANEL_REGISTRY_URL = url
    env = panel_env(
        shared_database_url(), "redis://127.0.0.1:9/0", tmp_path / "panel-var", settings.HOSTPANEL_SECRET_KEYS
    )
    env |= {
        "HOSTPANEL_SECRET_KEY": settings.SECRET_KEY,  # tokens signed here verify there
        "HOSTPANEL_REGISTRY_ROOT": str(registry_root),
        "HOSTPANEL_REGISTRY_URL": url,
        "HOSTPANEL_DEBUG": "0",
    }
    log = tmp_path / "daphne.log"
    server = start_daphne(["-b", "127.0.0.1", "-p", str(port)], env, log)
    try:
        wait_for(lambda: server.poll() is not None or _answers(url + "/v2/"), 60, f"daphne on {url}")
        assert server.poll() is None, f"daphne exited: {log.read_text()[-3000:]}"
        yield PanelRegistry(url, f"127.0.0.1:{port}", log)
    finally:
        stop_process(server)


@pytest.fixture()
def client_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine root with busybox, for pushing and pulling (no containers are run here)."""
    engine = Engine(root=tmp_path / "engine", instance="hpregc")
    engine.images.bootstrap_busybox()
    yield engine


@pytest.fixture()
def tenant_token(transactional_db: None) -> Callable[..., str]:
    """``tenant_token(slug, role)``: an API token secret of a new member of that tenant."""

    def make(slug: str, role: str = Role.DEVELOPER) -> str:
        tenant = TenantFactory(slug=slug)
        assert isinstance(tenant, Tenant)
        user = MembershipFactory(tenant=tenant, role=role).user
        _, secret = create_token(Actor(user=user), tenant, "registry client tests")
        return secret

    return make
