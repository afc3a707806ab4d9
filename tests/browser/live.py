"""What the browser tests import: the live stack's helpers and the pages' console records.

A plain module (conftest.py is not imported by test modules): the fixtures in
conftest.py build these objects.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.stack import Agent, Caddy, wait_for

PASSWORD = "browser-test-pw-7Q"  # every user the helpers make has it
TAKEN = "every test of tests/browser shares one stack, so pick names no other test there uses"


@dataclass
class StackUser:
    """A user the helpers made: log in with ``username`` and ``password``."""

    pk: int
    username: str
    password: str = PASSWORD
    is_staff: bool = False


@dataclass
class LiveStack:
    """The running stack and helpers to put things into it (see the module docstring)."""

    base_url: str
    agent: Agent
    db: Callable[[], AbstractContextManager[None]]
    workdir: Path
    server_log: Path
    caddy: Caddy | None = None  # the edge proxy the agent configures: apps at <app>-<tenant>.localhost
    wait_for: Callable[..., Any] = field(default=wait_for)

    def app_url(self, slug: str, app: str, path: str = "/") -> str:
        """Where a browser opens app ``app`` of tenant ``slug`` through the edge proxy."""
        assert self.caddy is not None
        return f"http://{app}-{slug}.localhost:{self.caddy.http_port}{path}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def _admin(self) -> Any:
        from django.contrib.auth import get_user_model

        from hostpanel.audit.services import Actor

        admin, _ = get_user_model().objects.get_or_create(
            username="stack-admin", defaults={"is_staff": True, "is_superuser": True}
        )
        return Actor(user=admin)

    def user(self, username: str, *, staff: bool = False) -> StackUser:
        """A user with :data:`PASSWORD` (staff users are admins)."""
        from django.contrib.auth import get_user_model

        with self.db():
            if get_user_model().objects.filter(username=username).exists():
                raise AssertionError(f"user {username!r} exists already: {TAKEN}")
            user = get_user_model().objects.create_user(
                username, password=PASSWORD, is_staff=staff, is_superuser=staff
            )
        return StackUser(user.pk, username, is_staff=staff)

    def tenant(self, slug: str, owner: StackUser | None = None, **quota: int) -> str:
        """Create tenant ``slug`` (with ``owner`` as its owner, quota overrides) through the services."""
        from hostpanel.tenants import services
        from hostpanel.tenants.models import Tenant

        with self.db():
            actor = self._admin()
            if Tenant.objects.filter(slug=slug).exists():
                raise AssertionError(f"tenant {slug!r} exists already: {TAKEN}")
            tenant = services.create_tenant(actor, slug, owner=owner.username if owner else None)
            if quota:
                services.update_quota(actor, tenant, **quota)
        return slug

    def member(self, slug: str, user: StackUser, role: str) -> None:
        """Give ``user`` ``role`` (viewer, developer, owner) in tenant ``slug``."""
        from hostpanel.tenants import services
        from hostpanel.tenants.access import get_tenant

        with self.db():
            actor = self._admin()
            services.add_member(actor, get_tenant(actor, slug), user.username, role)

    def token(self, slug: str, user: StackUser) -> str:
        """A fresh API token secret of ``user`` in tenant ``slug``."""
        from django.contrib.auth import get_user_model

        from hostpanel.audit.services import Actor
        from hostpanel.tenants import services
        from hostpanel.tenants.access import get_tenant

        with self.db():
            actor = Actor(user=get_user_model().objects.get(pk=user.pk))
            _, secret = services.create_token(actor, get_tenant(actor, slug), "browser-test")
        return secret

    def app(self, slug: str, name: str, **spec: Any) -> int:
        """Create and deploy an app through the services (image busybox:latest unless given); its pk."""
        from hostpanel.deployments import services
        from hostpanel.tenants.access import get_tenant

        values: dict[str, Any] = {"image": "busybox:latest", "command": ["sleep", "3600"]} | spec
        with self.db():
            actor = self._admin()
            app = services.create_app(actor, get_tenant(actor, slug), name, services.AppSpec(**values))
        return int(app.pk)

    def running_app(self, slug: str, owner: StackUser, app: str, command: list[str]) -> int:
        """Tenant ``slug`` of ``owner`` with app ``app`` (busybox running ``command``) up; its replica id."""
        self.tenant(slug, owner)
        self.app(slug, app, command=command)
        rows = self.wait_for(
            lambda: [r for r in self.replicas_of(slug, app) if r["state"] == "running"],
            60,
            f"the {app} app to run\n{self.agent.log_tail()}",
        )
        return int(rows[0]["id"])

    def replicas_of(self, slug: str, app: str) -> list[dict[str, Any]]:
        """The app's replica rows (id, index, state, restart_count, engine_id) as the panel sees them."""
        from hostpanel.deployments.models import Replica

        with self.db():
            rows = Replica.objects.filter(app__tenant__slug=slug, app__name=app).order_by("index")
            return list(rows.values("id", "index", "state", "restart_count", "engine_id"))

    def server_log_tail(self, lines: int = 40) -> str:
        text = self.server_log.read_text(errors="replace") if self.server_log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


_CONSOLE: dict[int, list[str]] = {}


def console_of(page: Any) -> list[str]:
    """Console messages and page errors ``page`` logged so far ("type: text")."""
    return _CONSOLE.setdefault(id(page), [])


def forget_console(page: Any) -> None:
    _CONSOLE.pop(id(page), None)
