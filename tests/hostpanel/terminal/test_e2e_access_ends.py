"""End to end: removing a member through the API kills the shell it has open in a real container.

Real Redis channel layer, a real host agent relaying `crun exec`, a real container.
The removed developer had started a background job; both it and the shell are gone
once the panel says the session ended, and the audit entry says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import Replica
from hostpanel.tenants.models import Membership, Role
from hostpanel.terminal import consumers
from tests.hostpanel.e2e.conftest import LiveTenant, agents, celery_to, live_tenant, redis_url  # noqa: F401
from tests.hostpanel.terminal.test_e2e_terminal import next_json, open_socket, processes_in, read_until
from tests.stack import Agent, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]


@pytest.fixture
def running(live_tenant: Callable[[str, str, str, str], LiveTenant]) -> tuple[Agent, Replica, Any, Any]:  # noqa: F811
    term = live_tenant("acc", "acc", "acc-dev", Role.DEVELOPER)
    return term.agent, term.deploy("box", ["sleep", "3600"]), term.member, term.admin.user


def test_removing_the_member_through_the_api_ends_its_open_shell(
    running: tuple[Agent, Replica, Any, Any], settings: Any
) -> None:
    settings.HOSTPANEL_ACCESS_RECHECK_SECONDS = 3600  # the change itself must end it, not the poll
    h1, replica, developer, admin = running
    membership = Membership.objects.get(user=developer, tenant=replica.app.tenant)

    def remove() -> None:
        client = APIClient()
        client.force_authenticate(admin)
        r = client.delete(f"/api/v1/tenants/acc/members/{membership.pk}/")
        assert r.status_code == 204, r.content

    async def session() -> tuple[dict[str, Any], dict[str, Any]]:
        communicator = open_socket(replica, developer)
        connected, _ = await communicator.connect()
        assert connected
        await read_until(communicator, rb"# ")
        await communicator.send_to(bytes_data=b"sleep 4343 & echo bg-$((40+3))\n")
        await read_until(communicator, rb"bg-43")
        await database_sync_to_async(remove)()
        message = await next_json(communicator)
        return message, await communicator.receive_output(timeout=20)

    message, closed = async_to_sync(session)()
    assert message == {"type": "error", "message": consumers.ACCESS_ENDED}
    assert closed == {"type": "websocket.close", "code": 4403}
    entry = wait_for(
        lambda: AuditLog.objects.filter(action="container.exec", message__contains="exit code").first(),
        30,
        f"the session to end\n{h1.log_tail()}",
    )
    assert entry.message == f"command: /bin/sh; exit code 137 ({consumers.ACCESS_ENDED})"
    left = processes_in(h1, replica.container_name)
    assert "sleep 4343" not in left and "/bin/sh" not in left, left
