"""An open log stream ends within seconds of its viewer losing access.

The viewer is removed from the tenant through the panel's API (or its user is
disabled) while it watches a container's live log; the stream says why, closes
with 4404, and lines written afterwards never reach it. The real follower serves
the in-memory layer, as in test_consumers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from hostpanel.deployments.models import Replica
from hostpanel.logstream import consumers
from hostpanel.tenants.models import Membership, Role, Tenant
from tests.hostpanel.logstream.fakes import FileEngine
from tests.hostpanel.logstream.logfiles import append
from tests.hostpanel.logstream.test_consumers import collect_until_ready, open_socket, run_with_agent, texts

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def replica(tenant: Tenant, make_app: Callable[..., Any]) -> Replica:
    make_app(tenant)
    return Replica.objects.select_related("host").get(app__tenant=tenant)


def _remove_through_the_api(tenant: Tenant, user: Any) -> None:
    owner = Membership.objects.get(tenant=tenant, role=Role.OWNER).user
    client = APIClient()
    client.force_authenticate(owner)
    membership = Membership.objects.get(tenant=tenant, user=user)
    r = client.delete(f"/api/v1/tenants/{tenant.slug}/members/{membership.pk}/")
    assert r.status_code == 204, r.content


CHANGES: dict[str, Callable[[Tenant, Any], None]] = {
    "removed-through-the-api": _remove_through_the_api,
    "removed-quietly": lambda t, u: Membership.objects.filter(tenant=t, user=u).delete(),
    "user-disabled": lambda t, u: get_user_model().objects.filter(pk=u.pk).update(is_active=False),
}


@pytest.mark.parametrize("how", sorted(CHANGES))
def test_a_log_stream_closes_when_its_viewer_loses_access(
    how: str, replica: Replica, tenant: Tenant, member: Callable[..., Any], tmp_path: Path, settings: Any
) -> None:
    # Removals signal the stream at once (the re-check interval is an hour here); the
    # bulk update sends no signal and is caught by the periodic re-check, made short.
    settings.HOSTPANEL_ACCESS_RECHECK_SECONDS = 0.05 if how == "user-disabled" else 3600
    member(tenant, Role.OWNER)
    viewer = member(tenant, Role.VIEWER)
    engine = FileEngine()
    log = engine.add_log(replica.container_name, tmp_path)
    append(log, [(1, "stdout", "before")])

    async def body() -> None:
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/?tail=5")
        assert texts(await collect_until_ready(communicator)) == ["before"]

        await database_sync_to_async(CHANGES[how])(tenant, viewer)
        append(log, [(2, "stdout", "secret after removal")])

        messages = []
        while (output := await communicator.receive_output(timeout=10))["type"] == "websocket.send":
            messages.append(output["text"])
        assert output == {"type": "websocket.close", "code": consumers.REFUSED}
        assert f'"message": "{consumers.ACCESS_ENDED}"' in messages[-1]
        if how != "user-disabled":  # told at once: not one line after the change gets through
            assert not any("secret after removal" in m for m in messages)

    run_with_agent(engine, body)
