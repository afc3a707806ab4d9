"""A shell in a real container on an enrolled agent, through the terminal socket.

The agent joins the real panel over HTTPS (test_e2e_enrollment.start_without_database) with no
``DATABASE_URL`` nor panel ``REDIS_URL``: its relay (hostpanel/agent/relay.py) talks to the panel's
consumer on its host's own pub/sub channels as its own Redis user, and completes the session's
audit entry through ``POST /internal/v1/exec/<id>/finished``. The consumer runs in this process
(Channels' communicator, as tests/hostpanel/terminal/test_e2e_terminal.py does) on the same Redis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async

from tests.hostpanel.e2e.test_e2e_enrollment import deploy_on, panel  # noqa: F401
from tests.hostpanel.terminal.test_e2e_terminal import connected_socket, next_json, read_until
from tests.stack import Panel, remove_agent_leftovers, start_without_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("privileged")]


def test_echo_in_a_container_on_an_agent_without_the_database_and_its_audit_entry(
    panel: Panel,  # noqa: F811
    tmp_path: Path,
    redis_url: str,
) -> None:
    from hostpanel.audit.models import AuditLog
    from hostpanel.tenants.models import Role

    agent = start_without_database(panel, "termnodb", tmp_path)
    try:
        developer, replica = deploy_on(agent, "termco", "tn-dev", Role.DEVELOPER, ["sleep", "3600"])
        admin_redis = redis.Redis.from_url(redis_url)

        async def session() -> tuple[bytes, dict[str, Any], set[str]]:
            communicator = await connected_socket(replica, developer)
            try:
                # the relay listens for this session's input on the host's own channels
                channels = await sync_to_async(admin_redis.pubsub_channels)(
                    "hostlogs.termnodb.__group__exec.*"
                )
                await communicator.send_to(bytes_data=b"echo hello-$((6*7)); stty size\n")
                output, _ = await read_until(communicator, rb"hello-42\r\n30 100\r\n")
                await communicator.send_to(text_data=json.dumps({"type": "input", "data": "exit 3\n"}))
                return output, await next_json(communicator), {c.decode() for c in channels}
            finally:
                await communicator.disconnect()

        output, end, channels = async_to_sync(session)()
        assert b"hello-42\r\n" in output
        assert end == {"type": "exit", "code": 3, "reason": "exited"}
        assert len(channels) == 1, channels
        entry = wait_for(
            lambda: AuditLog.objects.filter(action="container.exec", message__contains="exit code").first(),
            30,
            f"the agent to complete the audit entry\n{agent.log_tail()}",
        )
        assert (entry.actor_name, entry.tenant.slug, entry.object_id) == ("tn-dev", "termco", str(replica.pk))
        assert (entry.result, entry.message) == ("ok", "command: /bin/sh; exit code 3 (exited)")
        text = agent.log.read_text(errors="replace")
        assert "NOPERM" not in text and "completing the audit entry" not in text, agent.log_tail()
        assert "ImproperlyConfigured" not in text  # no query was tried
    finally:
        agent.stop()
        remove_agent_leftovers(agent)
