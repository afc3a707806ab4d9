"""The terminal socket with Channels' communicator: who is refused, what is audited, how it forwards.

The in-memory layer stands in for Redis and the host agent's start request is
recorded at the dispatch seam; this test then plays the agent's relay on the
layer. The real relay, agent and container are in test_e2e_terminal.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import Replica
from hostpanel.hosts.layer import host_layer
from hostpanel.tenants.models import Role
from hostpanel.terminal import services
from hostpanel.terminal.routing import websocket_urlpatterns
from tests.hostpanel.factories import TenantFactory, UserFactory

APP = URLRouter(websocket_urlpatterns)

# database_sync_to_async closes connections that are inside a transaction: commit for real
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Start requests the consumer sent to host agents (the dispatch seam)."""
    sent: list[dict[str, Any]] = []

    def record(ticket: services.ExecTicket, **kwargs: Any) -> None:
        sent.append({"ticket": ticket, **kwargs})

    monkeypatch.setattr("hostpanel.hosts.dispatch.send_start_exec", record)
    return sent


@pytest.fixture
def replica(tenant: Any, make_app: Callable[..., Any]) -> Replica:
    make_app(tenant)
    row = Replica.objects.select_related("host").get(app__tenant=tenant)
    assert row.host is not None
    return row


def communicator_for(user: Any, replica_id: int, query: str = "") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, f"/ws/containers/{replica_id}/exec/{query}")
    communicator.scope["user"] = user
    communicator.scope["client"] = ("203.0.113.9", 51000)
    return communicator


def refusal(user: Any, replica_id: int) -> tuple[dict[str, Any], int]:
    """The message and close code a refused socket gets."""

    async def run() -> tuple[dict[str, Any], int]:
        communicator = communicator_for(user, replica_id)
        connected, _ = await communicator.connect()
        assert connected
        message = await communicator.receive_json_from(timeout=5)
        closed = await communicator.receive_output(timeout=5)
        assert closed["type"] == "websocket.close"
        return message, int(closed["code"])

    return async_to_sync(run)()


def test_anonymous_other_tenants_and_unknown_containers_are_refused_alike(
    replica: Replica,
    member: Callable[..., Any],
    started: list[dict[str, Any]],
) -> None:
    outsider = member(TenantFactory(slug="other"), Role.OWNER)
    for user, replica_id in [
        (AnonymousUser(), replica.pk),
        (outsider, replica.pk),
        (outsider, 999999),
    ]:
        message, code = refusal(user, replica_id)
        assert code == 4404
        assert message == {"type": "error", "message": f"no container {replica_id}"}
    assert started == []
    # the outsider's attempts are audited without showing them to the tenant they probed
    denied = AuditLog.objects.filter(action=services.ACTION, result="denied")
    assert [(e.actor_id, e.tenant_id, e.object_id) for e in denied] == [(outsider.pk, None, "")] * 2


def test_a_viewer_cannot_exec_and_the_attempt_is_audited(
    replica: Replica, tenant: Any, member: Callable[..., Any], started: list[dict[str, Any]]
) -> None:
    viewer = member(tenant, Role.VIEWER)
    message, code = refusal(viewer, replica.pk)
    assert code == 4403
    assert message["type"] == "error" and "needs the developer role" in message["message"]
    assert started == []
    entry = AuditLog.objects.get(action=services.ACTION)
    assert (entry.actor_id, entry.tenant_id, entry.result) == (viewer.pk, tenant.pk, "denied")
    assert entry.source_address == "203.0.113.9"


def test_a_container_not_on_a_host_is_a_conflict(
    replica: Replica, tenant: Any, member: Callable[..., Any], started: list[dict[str, Any]]
) -> None:
    Replica.objects.filter(pk=replica.pk).update(host=None)
    message, code = refusal(member(tenant, Role.DEVELOPER), replica.pk)
    assert code == 4409
    assert "not placed on a host" in message["message"]
    assert started == []


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.OWNER, "staff"])
def test_developers_owners_and_staff_start_a_session_that_forwards_both_ways(
    role: str, replica: Replica, tenant: Any, member: Callable[..., Any], started: list[dict[str, Any]]
) -> None:
    user = UserFactory(username="ops", is_staff=True) if role == "staff" else member(tenant, role)

    async def run() -> dict[str, Any]:
        layer = host_layer(replica.host.name)
        communicator = communicator_for(user, replica.pk, "?rows=40&cols=132")
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_json_from(timeout=5) == {"type": "status", "state": "starting"}
        (request,) = started
        ticket: services.ExecTicket = request["ticket"]
        assert (request["rows"], request["cols"]) == (40, 132)
        assert ticket.container_name == replica.container_name and ticket.command == ("/bin/sh",)
        # typed before the agent answered: held, then sent after the first resize
        await communicator.send_to(bytes_data=b"early\n")
        relay = await layer.new_channel()
        await layer.group_add(services.group_name(ticket.session), relay)
        await layer.send(request["reply_channel"], {"type": "exec.started"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "status", "state": "connected"}
        received = [await layer.receive(relay) for _ in range(2)]
        assert received == [
            {"type": "exec.resize", "rows": 40, "cols": 132},
            {"type": "exec.input", "data": b"early\n"},
        ]
        await communicator.send_to(bytes_data=b"ls\n")
        await communicator.send_to(text_data=json.dumps({"type": "resize", "rows": 5000, "cols": "x"}))
        assert await layer.receive(relay) == {"type": "exec.input", "data": b"ls\n"}
        assert await layer.receive(relay) == {"type": "exec.resize", "rows": 24, "cols": 80}  # bad: defaults
        await layer.send(request["reply_channel"], {"type": "exec.output", "data": b"\x1b[1mbin\r\n"})
        assert await communicator.receive_from(timeout=5) == b"\x1b[1mbin\r\n"
        await layer.send(request["reply_channel"], {"type": "exec.exit", "code": 0, "reason": "exited"})
        assert await communicator.receive_json_from(timeout=5) == {
            "type": "exit",
            "code": 0,
            "reason": "exited",
        }
        closed = await communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 1000}
        return request

    request = async_to_sync(run)()
    entry = AuditLog.objects.get(pk=request["ticket"].audit_id)
    assert (entry.actor_id, entry.tenant_id, entry.action, entry.result) == (
        user.pk,
        tenant.pk,
        "container.exec",
        "ok",
    )
    assert (entry.object_id, entry.source_address) == (str(replica.pk), "203.0.113.9")
    assert entry.message == "command: /bin/sh; started"  # the relay completes it (e2e test)
    services.finish_session(entry.pk, 0, "exited")
    services.finish_session(entry.pk, None, "a late second report")  # only the first end counts
    entry.refresh_from_db()
    assert (entry.message, entry.result) == ("command: /bin/sh; exit code 0 (exited)", "ok")


def test_leaving_before_the_agent_answers_completes_the_audit_entry_as_failed(
    replica: Replica, tenant: Any, member: Callable[..., Any], started: list[dict[str, Any]]
) -> None:
    developer = member(tenant, Role.DEVELOPER)

    async def run() -> None:
        communicator = communicator_for(developer, replica.pk)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()

    async_to_sync(run)()
    entry = AuditLog.objects.get(pk=started[0]["ticket"].audit_id)
    assert entry.result == "failed"
    assert entry.message == "command: /bin/sh; failed: the browser left before the session started"


def test_an_agent_that_never_answers_ends_the_socket_with_an_error(
    replica: Replica,
    tenant: Any,
    member: Callable[..., Any],
    started: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hostpanel.terminal.consumers.START_TIMEOUT_SECONDS", 0.2)

    developer = member(tenant, Role.DEVELOPER)

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        communicator = communicator_for(developer, replica.pk)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)
        message = await communicator.receive_json_from(timeout=5)
        return message, await communicator.receive_output(timeout=5)

    message, closed = async_to_sync(run)()
    assert message == {
        "type": "error",
        "message": "the container's host agent did not answer; try again later",
    }
    assert closed == {"type": "websocket.close", "code": 4504}
    assert AuditLog.objects.get(pk=started[0]["ticket"].audit_id).result == "failed"


def test_may_exec_and_terminal_size(replica: Replica, tenant: Any, member: Callable[..., Any]) -> None:
    from hostpanel.audit.services import Actor

    assert services.may_exec(Actor(member(tenant, Role.DEVELOPER)), replica)
    assert not services.may_exec(Actor(member(tenant, Role.VIEWER)), replica)
    assert not services.may_exec(Actor(member(TenantFactory(slug="else"), Role.OWNER)), replica)
    assert services.terminal_size("30", "100") == (30, 100)
    assert services.terminal_size("0", "99999") == (1, services.MAX_SIZE)
    assert services.terminal_size(None, "") == (services.DEFAULT_ROWS, services.DEFAULT_COLS)


def test_output_is_acknowledged_as_it_goes_out_and_junk_from_the_host_is_dropped(
    replica: Replica, tenant: Any, member: Callable[..., Any], started: list[dict[str, Any]]
) -> None:
    from hostpanel.terminal.flow import ACK_EVERY

    developer = member(tenant, Role.DEVELOPER)

    async def run() -> None:
        layer = host_layer(replica.host.name)
        communicator = communicator_for(developer, replica.pk)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)
        (request,) = started
        relay = await layer.new_channel()
        await layer.group_add(services.group_name(request["ticket"].session), relay)
        reply = request["reply_channel"]
        for junk in (
            {"type": "exec.output", "data": "not bytes"},
            {"type": "exec.exit", "code": "0", "reason": "exited"},
            {"type": "exec.error"},
            {"type": "websocket.close"},  # not a relay's message: never reaches the socket
            {"type": "exec.resize", "rows": 1},
        ):
            await layer.send(reply, junk)
        await layer.send(reply, {"type": "exec.started"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "status", "state": "connected"}
        assert (await layer.receive(relay))["type"] == "exec.resize"
        chunk = b"y" * (ACK_EVERY // 2)
        for _ in range(3):
            await layer.send(reply, {"type": "exec.output", "data": chunk})
            assert await communicator.receive_from(timeout=5) == chunk
        # one ack for the first two chunks (ACK_EVERY bytes), none yet for the third
        assert await layer.receive(relay) == {"type": "exec.ack", "bytes": ACK_EVERY}
        await communicator.disconnect()
        assert (await layer.receive(relay))["type"] == "exec.close"

    async_to_sync(run)()
