"""End-to-end fixtures: a real Redis, real host agents (subprocesses) and real engines.

The test database is a file (settings: ``DATABASES['default']['TEST']['NAME']``)
so the agents, started with ``DATABASE_URL`` pointing at it, see what the test
writes; tests use ``transactional_db`` so their writes are committed. Every
agent is stopped and every container removed at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stack import (
    GRACE_SECONDS,
    Agent,
    Caddy,
    caddy_server,
    celery_pointed_at,
    free_port,
    launch_agent,
    panel_env,
    redis_server,
    remove_agent_leftovers,
    shared_database_url,
    unmount_below,
    wait_for,
)

# Shared with the browser tests (tests/stack.py); re-exported for the e2e test modules.
__all__ = ["GRACE_SECONDS", "Agent", "free_port", "unmount_below", "wait_for"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOSTPANEL_TEST_REDIS_URL`` if given, else a private redis-server on a free port."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def celery_to(redis_url: str) -> Iterator[str]:
    """Point this process's Celery app (sending tasks, reading results) at the test Redis."""
    with celery_pointed_at(redis_url) as url:
        yield url


@pytest.fixture
def agents(
    privileged: None, transactional_db: None, celery_to: str, tmp_path: Path, settings: Any
) -> Iterator[Callable[..., Agent]]:
    """Start host agents by name (each with its own engine root and instance); all cleaned up after."""
    settings.HOSTPANEL_HOST_GRACE_SECONDS = GRACE_SECONDS
    database_url = shared_database_url()
    started: list[Agent] = []

    def start(name: str, extra_env: dict[str, str] | None = None) -> Agent:
        """Agent ``name``; ``extra_env`` e.g. ``Caddy.agent_env()`` gives it that Caddy to configure."""
        env = panel_env(database_url, celery_to, tmp_path / "var", settings.HOSTPANEL_SECRET_KEYS)
        env |= {"HOSTPANEL_CADDY_ADMIN": ""} | (extra_env or {})  # no edge proxy unless given one
        agent = launch_agent(name, tmp_path, env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
    for agent in started:
        remove_agent_leftovers(agent)


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[Caddy]:
    """A real Caddy with only its admin API up; give ``caddy.agent_env()`` to the agent that configures it."""
    with caddy_server(tmp_path / "caddy") as server:
        yield server


@dataclass
class LiveTenant:
    """A tenant served by a running host agent, made by a staff admin, with one member."""

    agent: Agent
    admin: Any  # hostpanel.audit.services.Actor
    tenant: Any  # hostpanel.tenants.models.Tenant
    member: Any  # the member's User

    def deploy(self, app: str, command: list[str]) -> Any:
        """Create app ``app`` (busybox running ``command``); its replica once it runs."""
        from hostpanel.deployments import services as deployments
        from hostpanel.deployments.models import Replica

        deployments.create_app(
            self.admin, self.tenant, app, deployments.AppSpec(image="busybox:latest", command=command)
        )
        wait_for(
            lambda: Replica.objects.filter(app__tenant=self.tenant, state="running").exists(),
            40,
            f"the container to run\n{self.agent.log_tail()}",
        )
        return Replica.objects.get(app__tenant=self.tenant, app__name=app)


@pytest.fixture
def live_tenant(
    agents: Callable[[str], Agent], redis_url: str, settings: Any
) -> Callable[[str, str, str, str], LiveTenant]:
    """``live_tenant(prefix, slug, member, role)``: agent ``<prefix>-h1`` up, tenant ``slug`` and its member.

    The project's channel layer is pointed at the test Redis first (the agent publishes there);
    the tenant is made by the staff user ``<prefix>-admin``; ``member`` joins it with ``role``.
    """
    from hostpanel.audit.services import Actor
    from hostpanel.hosts.models import Host
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    # the project's layers (the default one and live logs' lines layer), on the test Redis
    layers = settings.CHANNEL_LAYERS
    settings.CHANNEL_LAYERS = {alias: x | {"CONFIG": {"hosts": [redis_url]}} for alias, x in layers.items()}

    def make(prefix: str, slug: str, member: str, role: str) -> LiveTenant:
        agent = agents(f"{prefix}-h1")
        wait_for(
            lambda: Host.objects.filter(name=f"{prefix}-h1", state="up").exists(), 30, "the agent to register"
        )
        admin = Actor(UserFactory(username=f"{prefix}-admin", is_staff=True, is_superuser=True))
        tenant = tenants.create_tenant(admin, slug)
        user = UserFactory(username=member)
        tenants.add_member(admin, tenant, user.username, role)
        return LiveTenant(agent, admin, tenant, user)

    return make
