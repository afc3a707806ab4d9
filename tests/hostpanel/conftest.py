"""Fixtures of the panel's tests: dispatched tasks are recorded, not sent (except end to end)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from rest_framework.test import APIClient

from hostpanel.agent import probes
from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory, UserFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end to end with real Redis, real host agents and real containers (root; CI runs it)"
    )


class InlineExecutor(futures.Executor):
    """Runs each job at once in the caller (unit tests see the probe's result when reconcile returns)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.fixture(autouse=True)
def inline_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Health probes run inline, inside the test's transaction (the live probe tests use the real pool)."""
    inline = probes.ProbeRunner(1, executor=InlineExecutor(), after_job=lambda: None)
    monkeypatch.setattr(probes, "_runner", inline)


@pytest.fixture(autouse=True)
def sent_reconciles(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Reconcile requests the code under test sent (to the seam hosts.dispatch)."""
    sent: list[tuple[int, str]] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.hosts.dispatch.send_reconcile", lambda host_id, queue: sent.append((host_id, queue))
        )
    return sent


@pytest.fixture(autouse=True)
def sent_routes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Routing tables the code under test sent (queue, table), to the seam edge.dispatch."""
    sent: list[tuple[str, Any]] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.edge.dispatch.send_routes", lambda queue, table: sent.append((queue, table))
        )
    return sent


@pytest.fixture(autouse=True)
def sent_purges(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[int, str, str]]:
    """Tenant purges the code under test sent (host id, queue, slug), to the seam hosts.dispatch."""
    sent: list[tuple[int, str, str]] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.hosts.dispatch.send_purge_tenant",
            lambda host_id, queue, slug: sent.append((host_id, queue, slug)),
        )
    return sent


TEST_SECRET_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def test_settings(settings: Any) -> None:
    """Fast password hashing, a secret key of the test run (not the repo's var/secret_keys), and
    API tokens checked on every request (tests/hostpanel/api/test_token_cache.py tests the cache)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.HOSTPANEL_TOKEN_CACHE_SECONDS = 0
    settings.HOSTPANEL_SECRET_KEYS = TEST_SECRET_KEY


@pytest.fixture
def admin_user(db: None) -> Any:
    return UserFactory(username="root-admin", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_actor(admin_user: Any) -> Actor:
    return Actor(user=admin_user)


@pytest.fixture
def host(db: None) -> Host:
    """Host h1, up, with the base image busybox:latest registered."""
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    return HostFactory(name="h1")


@pytest.fixture
def tenant(db: None) -> Tenant:
    return TenantFactory(slug="acme")


@pytest.fixture
def member() -> Callable[[Tenant, str], Any]:
    def make(tenant: Tenant, role: str = Role.DEVELOPER) -> Any:
        return MembershipFactory(tenant=tenant, role=role).user

    return make


@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    """An API client logged in as ``user`` (session), or anonymous with None."""

    def make(user: Any = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def make_app(admin_actor: Actor, host: Host) -> Callable[..., App]:
    def make(tenant: Tenant, name: str = "web", **spec: Any) -> App:
        values: dict[str, Any] = {"image": "busybox:latest", "command": ["sleep", "3600"]} | spec
        return deployments.create_app(admin_actor, tenant, name, deployments.AppSpec(**values))

    return make


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """``with on_commit(): ...`` runs the block's on-commit callbacks (enqueued tasks) at its end."""

    def make() -> Any:
        return django_capture_on_commit_callbacks(execute=True)

    return make


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> EnrolledAgents:
    """Reconcile a host as its enrolled agent would: ``agents.reconcile(engine, host)``
    (tests/hostpanel/hosts/enrolled_hosts.py: :class:`EnrolledAgents`)."""
    settings.HOSTPANEL_PUBLIC_URL = "https://panel.example"
    return EnrolledAgents(tmp_path, monkeypatch)
