"""An open terminal ends within seconds of its user losing access.

The member is removed through the panel's API (or demoted, or disabled) while its
shell is open: the socket is told why and closed with 4403, and the relay on the
host agent is told to stop the shell. A change that sends no signal (a bulk update)
is caught by the periodic re-check. The in-memory layer stands in for Redis and the
test plays the agent's relay, as in test_consumers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from hostpanel.deployments.models import Replica
from hostpanel.hosts.layer import host_layer
from hostpanel.tenants.models import Membership, Role, Tenant
from hostpanel.terminal import consumers, services
from tests.hostpanel.terminal.test_consumers import communicator_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "hostpanel.hosts.dispatch.send_start_exec", lambda ticket, **kw: sent.append({"ticket": ticket, **kw})
    )
    return sent


@pytest.fixture
def replica(tenant: Tenant, make_app: Callable[..., Any]) -> Replica:
    make_app(tenant)
    return Replica.objects.select_related("host").get(app__tenant=tenant)


def _remove_through_the_api(tenant: Tenant, user: Any) -> None:
    owner = Membership.objects.filter(tenant=tenant, role=Role.OWNER).first()
    client = APIClient()
    client.force_authenticate(owner.user if owner else get_user_model().objects.get(username="root-admin"))
    membership = Membership.objects.get(tenant=tenant, user=user)
    r = client.delete(f"/api/v1/tenants/{tenant.slug}/members/{membership.pk}/")
    assert r.status_code == 204, r.content


CHANGES: dict[str, Callable[[Tenant, Any], None]] = {
    "removed-through-the-api": _remove_through_the_api,
    "demoted-to-viewer": lambda t, u: Membership.objects.filter(tenant=t, user=u).update(role=Role.VIEWER),
    "user-disabled": lambda t, u: get_user_model().objects.filter(pk=u.pk).update(is_active=False),
}


def _open_then_change(
    user: Any, replica: Replica, started: list[dict[str, Any]], change: Callable[[], None]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        layer = host_layer(replica.host.name)
        communicator = communicator_for(user, replica.pk)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_json_from(timeout=5) == {"type": "status", "state": "starting"}
        (request,) = started
        relay = await layer.new_channel()
        await layer.group_add(services.group_name(request["ticket"].session), relay)
        await layer.send(request["reply_channel"], {"type": "exec.started"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "status", "state": "connected"}
        assert (await layer.receive(relay))["type"] == "exec.resize"
        await communicator.send_to(bytes_data=b"id\n")
        assert await layer.receive(relay) == {"type": "exec.input", "data": b"id\n"}

        await database_sync_to_async(change)()

        message = await communicator.receive_json_from(timeout=10)
        closed = await communicator.receive_output(timeout=10)
        to_relay = await layer.receive(relay)
        await communicator.send_to(bytes_data=b"cat /run/secrets/*\n")  # typed after the end: dropped
        await communicator.wait()
        return message, closed, to_relay

    return async_to_sync(run)()


@pytest.mark.parametrize("how", sorted(CHANGES))
def test_a_terminal_closes_when_its_user_loses_access(
    how: str,
    replica: Replica,
    tenant: Tenant,
    member: Callable[..., Any],
    started: list[dict[str, Any]],
    settings: Any,
) -> None:
    # The API removal signals the session at once; the bulk updates send no signal and are
    # caught by the periodic re-check (made short here so the test does not wait long).
    settings.HOSTPANEL_ACCESS_RECHECK_SECONDS = 3600 if how == "removed-through-the-api" else 0.05
    member(tenant, Role.OWNER)
    developer = member(tenant, Role.DEVELOPER)

    message, closed, to_relay = _open_then_change(
        developer, replica, started, lambda: CHANGES[how](tenant, developer)
    )

    assert message == {"type": "error", "message": consumers.ACCESS_ENDED}
    assert closed == {"type": "websocket.close", "code": 4403}
    assert to_relay == {"type": "exec.close", "reason": consumers.ACCESS_ENDED}
