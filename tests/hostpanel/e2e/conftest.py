"""End-to-end fixtures: a real Redis, the real panel, real host agents (subprocesses) and real engines.

The agents hold NO database settings, as in production: each is enrolled with the join command
and talks to the panel only through Celery over Redis (as its host's own ACL user) and the
internal API of a panel subprocess. That panel shares the test database
(tests.stack.shared_database_url), so it sees what the test writes; tests use
``transactional_db`` so their writes are committed. Every agent is stopped and every container
removed at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stack import (
    AGENT_ARGS,
    GRACE_SECONDS,
    Agent,
    Caddy,
    Panel,
    caddy_server,
    celery_pointed_at,
    free_port,
    redis_server,
    remove_agent_leftovers,
    serve_panel,
    start_without_database,
    unmount_below,
    wait_for,
    watch_hosts,
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
    privileged: None, transactional_db: None, celery_to: str, redis_url: str, tmp_path: Path, settings: Any
) -> Iterator[Callable[..., Agent]]:
    """Start host agents by name, each enrolled with the join command and running WITHOUT the
    database (:func:`tests.stack.start_without_database`: its own engine root and instance, its own
    Redis ACL user, the internal API); all cleaned up after.

    The first start serves the panel they call (:func:`tests.stack.serve_panel`: one daphne on
    loopback, joined over plain HTTP; its var directory is ``tmp_path / "var"``; the first agent's
    ``extra_env`` is its environment too, but a Caddy admin socket) and its periodic
    host checks (`manage.py watchhosts`: dead hosts, drains, placement), as production runs them."""
    settings.HOSTPANEL_HOST_GRACE_SECONDS = GRACE_SECONDS
    started: list[Agent] = []
    with ExitStack() as stack:
        panels: list[Panel] = []

        def start(name: str, extra_env: dict[str, str] | None = None) -> Agent:
            """Agent ``name``; ``extra_env`` e.g. ``Caddy.agent_env()`` gives it that Caddy to configure."""
            if not panels:  # the panel's own settings of the first agent's (a roll's drain...) too
                own = {k: v for k, v in (extra_env or {}).items() if k != "HOSTPANEL_CADDY_ADMIN"}
                panels.append(
                    stack.enter_context(serve_panel(tmp_path, settings, redis_url, tls=False, env=own))
                )
                stack.enter_context(watch_hosts(panels[0]))
            env = {"HOSTPANEL_CADDY_ADMIN": ""} | (extra_env or {})  # no edge proxy unless given one
            agent = start_without_database(panels[0], name, tmp_path, *AGENT_ARGS, env=env)
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
