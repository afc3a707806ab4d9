"""The terminal relay on its host's own Redis pub/sub channels, with real Redis ACL users.

Hosts h1 and h10 are enrolled (h10's name begins with h1's). The real relay (hostpanel/agent/
relay.py) runs a session of h1 as h1's own Redis user; the process is a stand-in that prints
without end into a pipe (so it blocks when nobody reads it, as a process on a full pty does), and
this test plays the panel's side on h1's layer with the panel's Redis user.

- Flow control: a viewer that takes output without acknowledging it gets at most a window of it,
  the process blocks, and the relay ends the session after STALL_SECONDS; a viewer that
  acknowledges gets many windows.
- Host h10, with its own credentials, can neither inject output into the session, nor type into it,
  nor read what is typed into it: Redis refuses (NOPERM).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async

from hostpanel.agent import relay
from hostpanel.hosts import redis_acl
from hostpanel.hosts.layer import host_layer
from hostpanel.terminal import services
from hostpanel.terminal.flow import ACK_EVERY, WINDOW_BYTES, Acks
from tests.hostpanel.logstream.test_host_channels import (  # noqa: F401
    host_urls,
    redis_admin_url,
    refused_subscription,
)

pytestmark = pytest.mark.django_db(transaction=True)

PIPE_AND_READ = 64 * 1024 + 64 * 1024 + 4096  # what a blocked printer may have beyond what was sent


class Printer:
    """A process printing without end: a thread writes into a pipe, and blocks when it is full."""

    pid = 4242

    def __init__(self) -> None:
        self.out, self.into = os.pipe()
        self.exit_out, self.exit_into = os.pipe()
        os.set_blocking(self.out, False)
        self.written = 0
        threading.Thread(target=self._print, daemon=True).start()

    def _print(self) -> None:
        chunk = b"x" * 4096
        while True:
            try:
                self.written += os.write(self.into, chunk)
            except OSError:
                return

    def fileno(self) -> int:
        return self.out

    def exit_fd(self) -> int:
        return self.exit_out

    def read(self, timeout: float | None = None) -> bytes | None:
        try:
            return os.read(self.out, 65536)
        except BlockingIOError:
            return None

    def write(self, data: bytes, timeout: float | None = None) -> int:
        return len(data)

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> int:
        for fd in (self.out, self.into, self.exit_out, self.exit_into):
            os.close(fd)
        return 137


class PrinterEngine:
    def __init__(self) -> None:
        self.printer = Printer()

    def exec_pty(self, container: str, spec: Any, rows: int, cols: int) -> Printer:
        return self.printer


@pytest.fixture
def short_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "STALL_SECONDS", 1.0)


def start_session(
    host_urls: dict[str, str],  # noqa: F811
    reply: str,
    finished: list[tuple[int, int | None, str]],
) -> tuple[relay.RelayRequest, threading.Thread, PrinterEngine]:
    """The real relay of a session of h1, as h1's own Redis user, sending to ``reply``."""
    request = relay.RelayRequest(
        session=secrets.token_hex(16),
        container_name="c1",
        reply_channel=reply,
        command=("/bin/sh",),
        rows=24,
        cols=80,
        audit_id=7,
        idle_seconds=600,
    )
    engine = PrinterEngine()
    link = relay.HostLink("h1", host_urls["h1"], finish=lambda *end: finished.append(end))
    return request, relay.start(engine, request, link), engine  # type: ignore[arg-type]


async def output_until_exit(layer: Any, reply: str, ack: str = "") -> tuple[int, dict[str, Any]]:
    """The bytes of output received until the exit message (acknowledged to group ``ack`` if given)."""
    received, acks = 0, Acks()
    while True:
        message = await asyncio.wait_for(layer.receive(reply), 20)
        if message["type"] != "exec.output":
            return received, message
        received += len(message["data"])
        if ack and (count := acks.took(len(message["data"]))):
            await layer.group_send(ack, {"type": "exec.ack", "bytes": count})
        if ack and received >= 4 * WINDOW_BYTES:
            await layer.group_send(ack, {"type": "exec.close"})
            ack = ""  # and stop acknowledging: what is in flight still comes


def test_a_viewer_that_stops_acknowledging_gets_at_most_a_window_and_the_session_ends(
    host_urls: dict[str, str],  # noqa: F811
    short_stall: None,
) -> None:
    finished: list[tuple[int, int | None, str]] = []

    async def body() -> tuple[int, dict[str, Any], int]:
        layer = host_layer("h1")  # the panel's side, with the panel's Redis user
        reply = await layer.new_channel()
        request, thread, engine = start_session(host_urls, reply, finished)
        assert (await asyncio.wait_for(layer.receive(reply), 20))["type"] == "exec.started"
        await layer.group_send(services.group_name(request.session), {"type": "exec.resize", "rows": 5})
        received, end = await output_until_exit(layer, reply)
        await sync_to_async(thread.join)(10)
        return received, end, engine.printer.written

    received, end, written = async_to_sync(body)()
    assert WINDOW_BYTES <= received <= WINDOW_BYTES + 65536, received
    assert written <= received + PIPE_AND_READ, (written, received)  # the process blocked
    assert end == {"type": "exec.exit", "code": 137, "reason": "the browser stopped reading"}
    assert finished == [(7, 137, "the browser stopped reading")]


def test_a_viewer_that_acknowledges_gets_many_windows(host_urls: dict[str, str]) -> None:  # noqa: F811
    finished: list[tuple[int, int | None, str]] = []

    async def body() -> tuple[int, dict[str, Any]]:
        layer = host_layer("h1")
        reply = await layer.new_channel()
        request, thread, _ = start_session(host_urls, reply, finished)
        assert (await asyncio.wait_for(layer.receive(reply), 20))["type"] == "exec.started"
        group = services.group_name(request.session)
        await layer.group_send(group, {"type": "exec.resize", "rows": 5, "cols": 5})
        received, end = await output_until_exit(layer, reply, ack=group)
        await sync_to_async(thread.join)(10)
        return received, end

    received, end = async_to_sync(body)()
    assert received >= 4 * WINDOW_BYTES and ACK_EVERY <= WINDOW_BYTES
    assert end == {"type": "exec.exit", "code": 137, "reason": "closed by the browser"}
    assert finished == [(7, 137, "closed by the browser")]


def test_another_host_can_neither_inject_output_nor_type_nor_read_keystrokes(
    host_urls: dict[str, str],  # noqa: F811
    redis_admin_url: str,  # noqa: F811
    short_stall: None,
) -> None:
    finished: list[tuple[int, int | None, str]] = []

    async def body() -> None:
        layer = host_layer("h1")
        reply = await layer.new_channel()
        request, thread, _ = start_session(host_urls, reply, finished)
        assert (await asyncio.wait_for(layer.receive(reply), 20))["type"] == "exec.started"
        group = services.group_name(request.session)
        keystrokes = f"{redis_acl.logs_prefix('h1')}__group__{group}"
        # h1's own user may use both ways (its relay subscribed to the keystrokes as h1)
        await host_layer("h1", host_urls["h1"]).send(reply, {"type": "exec.output", "data": b""})
        clients = await sync_to_async(redis.Redis.from_url(redis_admin_url).pubsub_numsub)(keystrokes)
        assert clients == [(keystrokes.encode(), 1)]

        # host h10, with its own credentials, aims at h1's session
        as_h10 = host_layer("h1", host_urls["h10"])
        with pytest.raises(redis.exceptions.NoPermissionError):  # output into h1's viewer
            await as_h10.send(reply, {"type": "exec.output", "data": b"FORGED"})
        with pytest.raises(redis.exceptions.NoPermissionError):  # keystrokes into h1's shell
            await as_h10.group_send(group, {"type": "exec.input", "data": b"rm -rf /\n"})
        with pytest.raises(redis.exceptions.NoPermissionError):  # ending it
            await as_h10.group_send(group, {"type": "exec.close"})
        h10 = redis.Redis.from_url(host_urls["h10"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            await sync_to_async(h10.publish)(reply, b"forged")
        assert await sync_to_async(refused_subscription)(host_urls["h10"], keystrokes)  # reading them
        assert await sync_to_async(refused_subscription)(host_urls["h10"], reply)  # reading the output
        # its own prefix is its own: h1's viewer and relay hear nothing of it
        await host_layer("h10", host_urls["h10"]).group_send(group, {"type": "exec.close"})

        await layer.group_send(group, {"type": "exec.resize", "rows": 5, "cols": 5})
        received, end = await output_until_exit(layer, reply)
        assert received > 0 and end["reason"] == "the browser stopped reading"  # not closed by h10
        await sync_to_async(thread.join)(10)

    async_to_sync(body)()
    assert finished == [(7, 137, "the browser stopped reading")]
