"""``POST /internal/v1/exec/<id>/finished``: an enrolled agent completes the
audit entry of an exec session it ran (hostpanel/terminal/internal.py).

Hosts sa and sb are enrolled (real Redis ACL users, as tests/hostpanel/hosts/conftest.py makes
them); a developer's session runs in a container placed on sa. Only sa's live token completes its
entry, once; sb, a tenant token, no token, a revoked host and hostile bodies change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rest_framework.test import APIClient

from hostpanel.agent.credentials import InternalClient
from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.deployments.models import Replica
from hostpanel.hosts import enrollment
from hostpanel.tenants.models import Role
from hostpanel.tenants.services import create_token
from hostpanel.terminal import services
from tests.hostpanel.hosts.conftest import enrolled, redis_admin_url  # noqa: F401
from tests.hostpanel.hosts.enrolled_hosts import as_host, place

pytestmark = pytest.mark.django_db

Hosts = dict[str, tuple[X25519PrivateKey, str]]


def finished(audit_id: int) -> str:
    return f"/internal/v1/exec/{audit_id}/finished"


@pytest.fixture
def session_on_sa(
    enrolled: Hosts,  # noqa: F811
    tenant: Any,
    member: Callable[..., Any],
    make_app: Callable[..., Any],
) -> tuple[AuditLog, Any]:
    """The audit entry of a session opened in a container on sa, and its developer."""
    app = make_app(tenant)
    replica: Replica = place(app, "sa")
    developer = member(tenant, Role.DEVELOPER)
    ticket = services.open_session(Actor(developer), replica.pk)
    assert ticket.host == "sa"
    return AuditLog.objects.get(pk=ticket.audit_id), developer


def state(entry: AuditLog) -> tuple[str, str]:
    entry.refresh_from_db()
    return entry.result, entry.message


def test_the_host_of_the_container_completes_its_sessions_entry_once(
    enrolled: Hosts,  # noqa: F811
    session_on_sa: tuple[AuditLog, Any],
) -> None:
    entry, _ = session_on_sa
    sb = as_host(enrolled["sb"][1])
    body = {"exit_code": 0, "reason": "exited"}
    # another host: as unknown as a made-up id, and nothing changes
    assert sb.post(finished(entry.pk), body, format="json").status_code == 404
    assert sb.post(finished(entry.pk + 1000), body, format="json").status_code == 404
    assert state(entry) == ("ok", "command: /bin/sh; started")

    sa = as_host(enrolled["sa"][1])
    answer = sa.post(finished(entry.pk), {"exit_code": 5, "reason": "exited"}, format="json")
    assert answer.status_code == 200, answer.content
    assert state(entry) == ("ok", "command: /bin/sh; exit code 5 (exited)")
    again = sa.post(finished(entry.pk), {"exit_code": None, "reason": "rewritten"}, format="json")
    assert again.status_code == 409 and "already ended" in again.content.decode()
    assert state(entry) == ("ok", "command: /bin/sh; exit code 5 (exited)")


def test_a_session_that_never_ran_is_completed_as_failed(
    enrolled: Hosts,  # noqa: F811
    session_on_sa: tuple[AuditLog, Any],
) -> None:
    entry, _ = session_on_sa
    body = {"exit_code": None, "reason": "container c is not running"}
    assert as_host(enrolled["sa"][1]).post(finished(entry.pk), body, format="json").status_code == 200
    assert state(entry) == ("failed", "command: /bin/sh; failed: container c is not running")


def test_an_entry_that_is_no_exec_session_is_unknown(
    enrolled: Hosts,  # noqa: F811
    session_on_sa: tuple[AuditLog, Any],
) -> None:
    entry, developer = session_on_sa
    other = AuditLog.objects.create(
        actor=developer,
        action="container.copy",
        object_type=entry.object_type,
        object_id=entry.object_id,
        message="to c:/tmp; started",
    )
    body = {"exit_code": 0, "reason": "exited"}
    assert as_host(enrolled["sa"][1]).post(finished(other.pk), body, format="json").status_code == 404
    assert AuditLog.objects.get(pk=other.pk).message == "to c:/tmp; started"


def test_hostile_bodies_and_callers_are_refused_and_change_nothing(
    enrolled: Hosts,  # noqa: F811
    session_on_sa: tuple[AuditLog, Any],
    tenant: Any,
) -> None:
    entry, developer = session_on_sa
    before = state(entry)
    sa = as_host(enrolled["sa"][1])

    def refused(body: Any, word: str) -> None:
        answer = sa.post(finished(entry.pk), body, format="json")
        assert answer.status_code == 400 and word in answer.content.decode(), (body, answer.content)

    refused({"exit_code": 0, "reason": "exited", "result": "ok"}, "unknown")
    refused({"reason": "exited"}, "exit_code")
    refused({"exit_code": 0}, "reason")
    refused({"exit_code": "0", "reason": "exited"}, "exit_code")
    refused({"exit_code": True, "reason": "exited"}, "exit_code")
    refused({"exit_code": 1.5, "reason": "exited"}, "exit_code")
    refused({"exit_code": 256, "reason": "exited"}, "exit_code")
    refused({"exit_code": -2, "reason": "exited"}, "exit_code")
    refused({"exit_code": 0, "reason": 7}, "reason")
    refused({"exit_code": 0, "reason": "r" * 501}, "reason")
    refused([{"exit_code": 0, "reason": "exited"}], "")
    assert state(entry) == before

    good = {"exit_code": 0, "reason": "exited"}
    _, secret = create_token(Actor(user=developer), tenant, "automation")
    tenant_token = APIClient()
    tenant_token.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    for caller in (APIClient(), as_host("hphost_forged"), as_host(secret), tenant_token):
        assert caller.post(finished(entry.pk), good, format="json").status_code == 401
    browser = APIClient()
    browser.force_login(developer)
    assert browser.post(finished(entry.pk), good, format="json").status_code in (401, 403)
    enrollment.revoke(None, "sa")  # revoked: refused at once
    assert sa.post(finished(entry.pk), good, format="json").status_code == 401
    assert state(entry) == before


def test_the_agents_client_sends_what_the_endpoint_reads(
    enrolled: Hosts,  # noqa: F811
    session_on_sa: tuple[AuditLog, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry, _ = session_on_sa
    sa = as_host(enrolled["sa"][1])

    def call(self: InternalClient, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = sa.generic(method, "/internal/v1/" + path, json.dumps(body), "application/json")
        assert answer.status_code == 200, answer.content
        return answer.json()

    monkeypatch.setattr(InternalClient, "call", call)
    InternalClient("https://panel.example", "unused").exec_finished(entry.pk, 137, "idle for 2 s" * 100)
    assert state(entry)[1].startswith("command: /bin/sh; exit code 137 (idle for 2 s")
