"""End to end: a shell in a real container through a real host agent and real Redis.

The consumer runs in this process (Channels' communicator) on the real Redis
channel layer; the agent subprocess runs `crun exec` on a pty in a thread and
relays it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from engine.runtime.model import ExecSpec
from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import Replica
from hostpanel.tenants.models import Role
from hostpanel.terminal.routing import websocket_urlpatterns
from tests.hostpanel.e2e.conftest import LiveTenant, agents, celery_to, live_tenant, redis_url  # noqa: F401
from tests.hostpanel.factories import UserFactory
from tests.stack import Agent, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

APP = URLRouter(websocket_urlpatterns)


async def read_until(
    communicator: WebsocketCommunicator, pattern: bytes
) -> tuple[bytes, list[dict[str, Any]]]:
    """Terminal output until ``pattern`` (a regex) matches, and the JSON messages seen meanwhile."""
    output, messages = b"", []
    while not re.search(pattern, output):
        frame = await communicator.receive_output(timeout=20)
        assert frame["type"] == "websocket.send", f"{frame} after {output!r}"
        if frame.get("bytes") is not None:
            output += frame["bytes"]
        else:
            messages.append(json.loads(frame["text"]))
            assert messages[-1]["type"] != "error", messages[-1]
    return output, messages


async def next_json(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The next text message (terminal output before it is skipped)."""
    while True:
        frame = await communicator.receive_output(timeout=20)
        assert frame["type"] == "websocket.send", frame
        if frame.get("text") is not None:
            message: dict[str, Any] = json.loads(frame["text"])
            return message


def processes_in(agent: Agent, container: str) -> str:
    """`ps` inside the container (besides the ps itself)."""
    proc = agent.engine.exec(container, ExecSpec(command=("ps", "-o", "pid,args")), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=20)
    return "\n".join(line for line in out.decode().splitlines() if "ps -o" not in line)


@pytest.fixture
def running(live_tenant: Callable[[str, str, str, str], LiveTenant]) -> tuple[Agent, Replica, Any]:  # noqa: F811
    """An agent, a running busybox replica of tenant ``term`` and a developer of that tenant."""
    term = live_tenant("term", "term", "term-dev", Role.DEVELOPER)
    return term.agent, term.deploy("box", ["sleep", "3600"]), term.member


def open_socket(replica: Replica, user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, f"/ws/containers/{replica.pk}/exec/?rows=30&cols=100")
    communicator.scope["user"] = user
    communicator.scope["client"] = ("192.0.2.7", 40000)
    return communicator


async def connected_socket(replica: Replica, user: Any) -> WebsocketCommunicator:
    """A terminal socket whose session the agent has started (its "starting", then "connected")."""
    communicator = open_socket(replica, user)
    connected, _ = await communicator.connect()
    assert connected
    assert await next_json(communicator) == {"type": "status", "state": "starting"}
    assert await next_json(communicator) == {"type": "status", "state": "connected"}
    return communicator


def test_echo_in_a_real_container_comes_back_and_the_session_is_audited(
    running: tuple[Agent, Replica, Any],
) -> None:
    h1, replica, developer = running

    async def session() -> tuple[bytes, dict[str, Any]]:
        communicator = await connected_socket(replica, developer)
        try:
            await communicator.send_to(bytes_data=b"echo hello-$RANDOM; stty size\n")
            output, _ = await read_until(communicator, rb"hello-\d+\r\n30 100\r\n")
            await communicator.send_to(text_data=json.dumps({"type": "input", "data": "exit 5\n"}))
            return output, await next_json(communicator)
        finally:
            await communicator.disconnect()

    output, end = async_to_sync(session)()
    assert re.search(rb"\r\nhello-\d+\r\n", output), output  # the answer, not just the echoed command
    assert end == {"type": "exit", "code": 5, "reason": "exited"}
    entry = wait_for(
        lambda: AuditLog.objects.filter(action="container.exec", message__contains="exit code").first(),
        20,
        "the audit entry to be completed",
    )
    assert (entry.actor_name, entry.tenant.slug, entry.object_id) == ("term-dev", "term", str(replica.pk))
    assert entry.source_address == "192.0.2.7"
    assert entry.result == "ok"
    assert entry.message == "command: /bin/sh; exit code 5 (exited)"
    assert "hello" not in entry.message  # input is never logged
    assert processes_in(h1, replica.container_name).count("/bin/sh") == 0


def test_closing_the_browser_kills_the_shell_and_what_it_runs(running: tuple[Agent, Replica, Any]) -> None:
    h1, replica, developer = running

    async def session() -> None:
        communicator = open_socket(replica, developer)
        connected, _ = await communicator.connect()
        assert connected
        await read_until(communicator, rb"# ")  # the prompt
        await communicator.send_to(bytes_data=b"sleep 4242 & echo bg-$((40+2))\n")
        await read_until(communicator, rb"bg-42")
        await communicator.disconnect()

    async_to_sync(session)()
    entry = wait_for(
        lambda: AuditLog.objects.filter(action="container.exec", message__contains="exit code").first(),
        30,
        f"the session to end\n{h1.log_tail()}",
    )
    assert entry.message == "command: /bin/sh; exit code 137 (closed by the browser)"
    left = processes_in(h1, replica.container_name)
    assert "sleep 4242" not in left and "/bin/sh" not in left, left
    assert "sleep 3600" in left  # the container itself runs on


def test_an_idle_session_is_ended_and_audited(running: tuple[Agent, Replica, Any], settings: Any) -> None:
    h1, replica, developer = running
    settings.HOSTPANEL_EXEC_IDLE_SECONDS = 2

    async def session() -> dict[str, Any]:
        communicator = open_socket(replica, developer)
        connected, _ = await communicator.connect()
        assert connected
        try:
            await read_until(communicator, rb"# ")
            return await next_json(communicator)  # nothing typed: the relay ends it
        finally:
            await communicator.disconnect()

    assert async_to_sync(session)() == {"type": "exit", "code": 137, "reason": "idle for 2 s"}
    entry = wait_for(
        lambda: AuditLog.objects.filter(action="container.exec", message__contains="exit code").first(),
        20,
        "the audit entry to be completed",
    )
    assert entry.message == "command: /bin/sh; exit code 137 (idle for 2 s)"
    assert "/bin/sh" not in processes_in(h1, replica.container_name)


def test_a_stopped_container_gives_a_clear_error_and_a_failed_audit_entry(
    running: tuple[Agent, Replica, Any],
) -> None:
    h1, replica, developer = running
    deployments.create_app(
        Actor(UserFactory(username="term-admin2", is_staff=True)),
        replica.app.tenant,
        "once",
        deployments.AppSpec(image="busybox:latest", command=["sleep", "3600"], restart_policy="no"),
    )
    wait_for(lambda: Replica.objects.filter(app__name="once", state="running").exists(), 40, "once to run")
    once = Replica.objects.get(app__name="once")
    h1.engine.stop(once.container_name, timeout=0)

    async def session() -> tuple[dict[str, Any], dict[str, Any]]:
        communicator = open_socket(once, developer)
        connected, _ = await communicator.connect()
        assert connected
        assert await next_json(communicator) == {"type": "status", "state": "starting"}
        error = await next_json(communicator)
        return error, await communicator.receive_output(timeout=20)

    error, closed = async_to_sync(session)()
    assert error == {
        "type": "error",
        "message": f"container {once.container_name} is not running; start it first",
    }
    assert closed == {"type": "websocket.close", "code": 4500}
    entry = wait_for(
        lambda: AuditLog.objects.filter(action="container.exec", result="failed").first(),
        20,
        "the audit entry to be completed",
    )
    assert (
        entry.message
        == f"command: /bin/sh; failed: container {once.container_name} is not running; start it first"
    )
