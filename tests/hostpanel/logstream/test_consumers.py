"""The live-log socket with Channels' communicator, the in-memory layer and the real follower.

The follower runs over real files (the engine behind its seam is tests' FileEngine).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from hostpanel.agent import follower
from hostpanel.deployments.models import Replica
from hostpanel.logstream import access, consumers, reading
from hostpanel.logstream.publish import forget, publish_lines
from hostpanel.logstream.routing import websocket_urlpatterns
from hostpanel.tenants.models import Role
from tests.hostpanel.factories import TenantFactory
from tests.hostpanel.logstream.fakes import FileEngine
from tests.hostpanel.logstream.logfiles import append, stamp

APP = URLRouter(websocket_urlpatterns)

# database_sync_to_async closes a connection that is inside a transaction (on PostgreSQL the
# next query then fails with "the connection is closed"): commit for real, as a server would
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=["one layer", "a lines layer of its own"])
def memory_layer(settings: Any, request: pytest.FixtureRequest) -> None:
    """In-memory layers: one for everything, or line batches on a second layer as in production
    (where that is Redis pub/sub), so the consumer's own receiving task is exercised too."""
    memory = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    settings.CHANNEL_LAYERS = {"default": memory}
    if request.param != "one layer":
        settings.CHANNEL_LAYERS["logs"] = memory


@pytest.fixture
def replica(tenant: Any, make_app: Callable[..., Any]) -> Replica:
    make_app(tenant)
    row = Replica.objects.select_related("host").get(app__tenant=tenant)
    assert row.host is not None and row.host.name == "h1"
    return row


@pytest.fixture
def viewer(tenant: Any, member: Callable[..., Any]) -> Any:
    """A viewer of the replica's tenant."""
    return member(tenant, Role.VIEWER)


@pytest.fixture
def served_log(replica: Replica, tmp_path: Path) -> tuple[FileEngine, Path]:
    """An engine whose container of ``replica`` logs to an (empty) file, and that file."""
    engine = FileEngine()
    return engine, engine.add_log(replica.container_name, tmp_path)


def run_with_agent(
    engine: FileEngine,
    body: Callable[[], Awaitable[None]],
    agent_follower: follower.LogFollower | None = None,
) -> None:
    """Run ``body`` while the real follower of host h1 (or ``agent_follower``) serves the in-memory layer."""
    log_follower = agent_follower or follower.LogFollower(engine, "h1")  # type: ignore[arg-type]

    async def main() -> None:
        stop = threading.Event()
        agent = asyncio.create_task(log_follower.run(stop))
        await asyncio.sleep(0.1)  # joined its group
        try:
            await body()
        finally:
            stop.set()
            await agent

    async_to_sync(main)()


async def open_socket(user: Any, path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def collect_until_ready(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await communicator.receive_json_from(timeout=10)
        if message["type"] == "ready":
            return messages
        messages.append(message)


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [line["text"] for m in messages if m["type"] == "lines" for line in m["lines"]]


async def assert_refused(user: Any, path: str) -> None:
    communicator = await open_socket(user, path)
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": consumers.REFUSED}  # nothing sent before
    assert await communicator.receive_nothing(timeout=0.2)


def test_anonymous_and_other_tenants_viewers_are_refused(
    replica: Replica, member: Callable[..., Any], tmp_path: Path
) -> None:
    outsider = member(TenantFactory(slug="other"), Role.OWNER)

    async def body() -> None:
        await assert_refused(AnonymousUser(), f"/ws/logs/{replica.pk}/")
        await assert_refused(outsider, f"/ws/logs/{replica.pk}/")
        await assert_refused(outsider, "/ws/logs/999999/")  # does not exist: the same answer
        await assert_refused(outsider, f"/ws/logs/build/{replica.pk}/")  # no authorizer for builds here

    run_with_agent(FileEngine(), body)


def test_a_viewer_gets_the_tail_then_live_lines_stdout_and_stderr_apart(
    replica: Replica, viewer: Any, served_log: tuple[FileEngine, Path]
) -> None:
    engine, log = served_log
    append(log, [(i, "stdout", f"old {i}") for i in range(1, 6)])

    async def body() -> None:
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/?tail=3")
        assert texts(await collect_until_ready(communicator)) == ["old 3", "old 4", "old 5"]
        append(log, [(6, "stdout", "live out"), (7, "stderr", "live err")])
        message = await communicator.receive_json_from(timeout=10)
        assert message["type"] == "lines"
        assert [(x["stream"], x["text"]) for x in message["lines"]] == [
            ("stdout", "live out"),
            ("stderr", "live err"),
        ]
        await communicator.disconnect()

    run_with_agent(engine, body)


def test_resume_after_a_cursor_sends_no_line_twice_and_none_missing(
    replica: Replica, viewer: Any, served_log: tuple[FileEngine, Path]
) -> None:
    engine, log = served_log
    append(log, [(i, "stdout", f"n{i}") for i in range(1, 11)])

    async def body() -> None:
        # the client had everything up to n4 when its connection dropped; n5..n10 were written since
        after = quote(f"{stamp(4)}#0", safe="")
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/?after={after}")
        received = await collect_until_ready(communicator)
        append(log, [(i, "stdout", f"n{i}") for i in range(11, 14)])
        while len(texts(received)) < 9:
            received.append(await communicator.receive_json_from(timeout=10))
        assert texts(received) == [f"n{i}" for i in range(5, 14)]
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()

    run_with_agent(engine, body)


def test_a_flood_is_bounded_with_a_skipped_marker_and_every_line_accounted_for(
    replica: Replica, viewer: Any, served_log: tuple[FileEngine, Path]
) -> None:
    engine, log = served_log
    flood = 3 * consumers.RATE_LINES  # over the per-viewer and per-stream bounds

    async def body() -> None:
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/")
        await collect_until_ready(communicator)
        append(log, [(i, "stdout", f"f{i}") for i in range(1, flood + 1)])
        sent, skipped, markers = [], 0, 0
        while len(sent) + skipped < flood:
            message = await communicator.receive_json_from(timeout=10)
            if message["type"] == "skipped":
                skipped += message["count"]
                markers += 1
            elif message["type"] == "lines":
                sent += [x["text"] for x in message["lines"]]
        assert len(sent) + skipped == flood
        assert markers >= 1 and skipped > 0
        assert len(sent) < flood
        numbers = [int(t[1:]) for t in sent]
        assert numbers == sorted(set(numbers))  # in order, none twice
        assert numbers[-1] == flood  # the newest line arrives
        await communicator.disconnect()

    run_with_agent(engine, body)


def test_a_burst_reaches_the_viewer_in_batches_not_a_message_per_line(
    replica: Replica, viewer: Any, served_log: tuple[FileEngine, Path]
) -> None:
    engine, log = served_log
    burst = 3000  # within every bound: all of it arrives

    async def body() -> None:
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/")
        await collect_until_ready(communicator)
        append(log, [(i, "stdout", f"b{i}") for i in range(1, burst + 1)])
        received: list[dict[str, Any]] = []
        while len(texts(received)) < burst:
            received.append(await communicator.receive_json_from(timeout=10))
        assert texts(received) == [f"b{i}" for i in range(1, burst + 1)]
        assert all(m["type"] == "lines" for m in received)
        # one file write: a handful of frames of many lines (one per NOTIFY_LINES at most), never 3000
        assert len(received) <= burst // follower.NOTIFY_LINES + 2
        await communicator.disconnect()

    run_with_agent(engine, body)


class CountingJson:
    """``json`` for the consumer module, counting what it encodes."""

    def __init__(self) -> None:
        self.encoded = 0

    def dumps(self, value: Any) -> str:
        self.encoded += 1
        return json.dumps(value)


def test_live_lines_that_overlap_the_backfill_are_sent_once_on_an_open_socket(
    replica: Replica, viewer: Any, served_log: tuple[FileEngine, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood writes while the agent reads the backfill: the live batch the viewer holds meanwhile
    repeats lines the backfill has. Only the rest of it is sent (a message of its own, not the
    batch's shared frame), and the socket stays open for the next batch."""
    engine, log = served_log
    log_follower = follower.LogFollower(engine, "h1")  # type: ignore[arg-type]
    read_backfill = reading.backfill

    def backfill_during_a_write(*args: Any) -> reading.Backfill:
        append(log, [(i, "stdout", f"n{i}") for i in range(1, 6)])  # one write: one live batch
        watch = log_follower.watches[str(replica.pk)]
        wait_until(lambda: watch.taken == 5)  # published
        result = read_backfill(*args)
        result.lines = result.lines[:3]  # read before n4 and n5 were written
        return result

    monkeypatch.setattr(reading, "backfill", backfill_during_a_write)

    async def body() -> None:
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/")
        received = await collect_until_ready(communicator)
        while len(texts(received)) < 5:
            received.append(await communicator.receive_json_from(timeout=10))
        assert texts(received) == ["n1", "n2", "n3", "n4", "n5"]
        append(log, [(6, "stdout", "n6")])
        assert texts([await communicator.receive_json_from(timeout=10)]) == ["n6"]  # still open
        await communicator.disconnect()

    run_with_agent(engine, body, log_follower)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_hundred_viewers_of_one_container_share_one_follower(
    replica: Replica, viewer: Any, served_log: tuple[FileEngine, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, log = served_log
    log_follower = follower.LogFollower(engine, "h1")  # type: ignore[arg-type]
    counting = CountingJson()
    monkeypatch.setattr(consumers, "json", counting)

    async def body() -> None:
        sockets = [await open_socket(viewer, f"/ws/logs/{replica.pk}/?tail=0") for _ in range(100)]
        for communicator in sockets:
            await collect_until_ready(communicator)
        assert list(log_follower.watches) == [str(replica.pk)]
        threads = [t for t in threading.enumerate() if t.name == f"logs-{replica.pk}"]
        assert len(threads) == 1  # one thread reads the file, whatever the number of viewers
        append(log, [(1, "stdout", "to all")])
        for communicator in sockets:
            message = await communicator.receive_json_from(timeout=10)
            assert texts([message]) == ["to all"]
        assert counting.encoded == 1  # the batch's frame is encoded once for all 100
        for communicator in sockets:
            await communicator.disconnect()

    run_with_agent(engine, body, log_follower)


def test_a_host_agent_that_does_not_answer_is_reported(
    replica: Replica, viewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "BACKFILL_TIMEOUT", 0.2)

    async def body() -> None:  # no agent listens
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/")
        messages = await collect_until_ready(communicator)
        assert messages[0]["type"] == "error" and "did not answer" in messages[0]["message"]
        await communicator.disconnect()

    async_to_sync(body)()


def test_other_producers_publish_to_their_own_kind_with_their_own_authorizer(
    replica: Replica, tenant: Any, member: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = member(tenant, Role.VIEWER)
    other = member(TenantFactory(slug="other"), Role.OWNER)
    monkeypatch.setitem(access._authorizers, "testbuild", lambda user, key: user.pk == allowed.pk)
    forget("testbuild", "42")  # a stream of its own: cursors from 1

    async def body() -> None:
        await assert_refused(other, "/ws/logs/testbuild/42/")
        communicator = await open_socket(allowed, "/ws/logs/testbuild/42/")
        assert await collect_until_ready(communicator) == []
        await sync_to_async(publish_lines)("testbuild", "42", [{"stream": "stdout", "text": "Step 1/2"}])
        message = await communicator.receive_json_from(timeout=5)
        assert message == {
            "type": "lines",
            "lines": [{"cursor": "1", "stream": "stdout", "time": "", "text": "Step 1/2"}],
        }
        await communicator.disconnect()

    async_to_sync(body)()
