"""End to end: a real container's lines reach a WebSocket through a real host agent and real Redis.

The consumer runs in this process (Channels' communicator) on the real Redis channel
layer; the agent subprocess follows conmon's log file and publishes to it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from hostpanel.logstream.routing import websocket_urlpatterns
from hostpanel.tenants.models import Role
from tests.hostpanel.e2e.conftest import LiveTenant, agents, celery_to, live_tenant, redis_url  # noqa: F401
from tests.stack import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

COUNTER = (
    'i=0; while true; do i=$((i+1)); echo "seq $i"; '
    '[ $((i % 5)) -eq 0 ] && echo "err $i" >&2; sleep 0.1; done'
)


async def receive_lines(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    """Messages until ``count`` lines arrived after "ready" (lines before it included)."""
    lines: list[dict[str, Any]] = []
    ready = False
    live = 0
    while not ready or live < count:
        message = await communicator.receive_json_from(timeout=20)
        assert message["type"] in ("lines", "ready"), message
        if message["type"] == "ready":
            ready = True
        else:
            lines += message["lines"]
            live += len(message["lines"]) if ready else 0
    return lines


def numbers(lines: list[dict[str, Any]]) -> list[int]:
    return [int(m.group(1)) for x in lines if (m := re.fullmatch(r"seq (\d+)", x["text"]))]


def test_lines_of_a_real_container_reach_a_socket_live_and_resume_without_gaps(
    live_tenant: Callable[[str, str, str, str], LiveTenant],  # noqa: F811
) -> None:
    logs = live_tenant("logs", "logs", "logs-viewer", Role.VIEWER)
    h1, viewer = logs.agent, logs.member
    replica = logs.deploy("counter", ["sh", "-c", COUNTER])
    time.sleep(6)  # the agent's follower idles longer than Redis reads may block (see logstream.layer)
    app = URLRouter(websocket_urlpatterns)

    async def session(after: str | None, count: int) -> list[dict[str, Any]]:
        path = f"/ws/logs/{replica.pk}/" + (f"?after={quote(after, safe='')}" if after else "")
        communicator = WebsocketCommunicator(app, path)
        communicator.scope["user"] = viewer
        connected, _ = await communicator.connect()
        assert connected
        try:
            return await receive_lines(communicator, count)
        finally:
            await communicator.disconnect()

    first = async_to_sync(session)(None, 15)
    seen = numbers(first)
    assert seen == list(range(seen[0], seen[-1] + 1)), "a gap or a repeat between backfill and live lines"
    assert {x["stream"] for x in first if x["text"].startswith("err ")} == {"stderr"}
    assert {x["stream"] for x in first if x["text"].startswith("seq ")} == {"stdout"}

    wait_for(  # the container writes on while the viewer is away
        lambda: (
            f"seq {seen[-1] + 10}"
            in h1.engine.containers.log_path(h1.engine.get(replica.container_name)).read_text()
        ),
        20,
        "more lines while disconnected",
    )
    second = async_to_sync(session)(first[-1]["cursor"], 5)
    resumed = numbers(second)
    assert resumed[0] == seen[-1] + 1, "the resumed stream must start right after the last line seen"
    assert resumed == list(range(resumed[0], resumed[-1] + 1))
    cursors = [x["cursor"] for x in first + second]
    assert len(cursors) == len(set(cursors))

    # the same lines through the REST API: after a cursor, and as a download
    api = APIClient()
    api.force_authenticate(viewer)
    base = f"/api/v1/tenants/logs/containers/{replica.pk}/logs/"
    r = api.get(base, {"after": first[-1]["cursor"], "tail": 10000})
    assert r.status_code == 200 and r["X-Log-Lost"] == "false"
    assert numbers(r.json())[: len(resumed)] == resumed
    assert r.json()[0]["cursor"] == second[0]["cursor"]
    download = api.get(base, {"download": "1"})
    assert download.status_code == 200 and download["Content-Type"].startswith("text/plain")
    assert 'filename="logs-counter-0.log"' in download["Content-Disposition"]
    text = download.content.decode()
    assert " stdout seq 1\n" in text and " stderr err 5\n" in text
    assert "log follower failed" not in h1.log.read_text(errors="replace"), h1.log_tail()
