"""End to end: rolling deploys of busybox apps under steady load through a real Caddy.

A real agent configures the Caddy and answers its upstream lookups from the
routing table; the load sends requests to Caddy with the app's hostname. Zero
failed requests across a deploy, a restart, a scale and a release that never
becomes ready (which leaves the old release current and serving); a websocket opened
before a deploy keeps its connection (to the old replica, which drains) across the switch.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.services import Actor
from hostpanel.deployments import rotation
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Release, Rollout
from hostpanel.hosts.models import Host
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import UserFactory
from tests.loadgen import Load, private_port_range
from tests.stack import Agent, Caddy, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

PORT = 8080
# serves "$V" at / on PORT (busybox httpd, a file written at start)
HTTPD = ["sh", "-c", f'mkdir -p /www && echo "$V" > /www/index.html && exec httpd -f -p {PORT} -h /www']
REFRESH = 1.0  # seconds: how often Caddy refreshes its dynamic upstreams
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


def rollout_of(release: Release) -> Rollout | None:
    return Rollout.objects.filter(release=release).order_by("-pk").first()


def rolled(release: Release) -> Callable[[], str]:
    def check() -> str:
        r = rollout_of(release)
        return r.state if r is not None and r.state != "rolling" else ""

    return check


@pytest.fixture
def roll_env(settings: Any) -> dict[str, str]:
    """Rolls here: 3 s of drain (above the 1 s refresh), 15 s to become ready; published ports of
    our own (engineers' test runs share this machine's default range). For the agent and this process."""
    env = {
        "HOSTPANEL_ROLL_DRAIN_SECONDS": "3",
        "HOSTPANEL_ROLL_DEADLINE_SECONDS": "15",
        "HOSTPANEL_PORT_RANGE": private_port_range(),
    }
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS = 3.0
    settings.HOSTPANEL_ROLL_DEADLINE_SECONDS = 15.0
    settings.HOSTPANEL_PORT_RANGE = env["HOSTPANEL_PORT_RANGE"]
    return env


def web_tenant(agents: Callable[..., Agent], caddy: Caddy, env: dict[str, str], slug: str) -> Actor:
    """An agent configuring ``caddy``, tenant ``slug``; returns the staff admin who acts."""
    agents(f"{slug}-h1", caddy.agent_env() | env)
    wait_for(lambda: Host.objects.filter(name=f"{slug}-h1", state="up").exists(), 30, "the agent to register")
    admin = Actor(UserFactory(username=f"{slug}-admin", is_staff=True, is_superuser=True))
    tenants.create_tenant(admin, slug)
    return admin


def answers(caddy: Caddy, hostname: str) -> Callable[[], str]:
    def check() -> str:
        sample = Load(lambda: "", host=hostname).get(f"http://127.0.0.1:{caddy.http_port}/")
        return sample.body if sample.ok else ""

    return check


def test_rolls_under_load_lose_no_request_and_a_never_ready_release_changes_nothing(
    roll_env: dict[str, str], agents: Callable[..., Agent], caddy: Caddy
) -> None:
    admin = web_tenant(agents, caddy, roll_env, "rollco")
    tenant = Tenant.objects.get(slug="rollco")
    spec = deployments.AppSpec(image="busybox:latest", command=HTTPD, env={"V": "v1"}, http_port=PORT)
    app = deployments.create_app(admin, tenant, "web", spec)
    hostname = "web-rollco.localhost"
    wait_for(lambda: answers(caddy, hostname)() == "v1", 60, f"v1 through caddy\n{caddy.log_tail()}")
    load = Load(lambda: f"http://127.0.0.1:{caddy.http_port}/", host=hostname).start()
    try:
        wait_for(lambda: len(load.samples) > 20, 20, "the load to run")
        v2 = deployments.deploy(admin, App.objects.get(pk=app.pk), env={"V": "v2"})
        assert App.objects.get(pk=app.pk).current_release.version == 1  # until v2 is ready
        assert wait_for(rolled(v2), 60, f"v2 to roll\n{caddy.log_tail()}") == "succeeded"
        switched = time.monotonic()
        wait_for(lambda: load.bodies_since(switched + REFRESH) == {"v2"}, 10, "only v2 to answer")

        app = App.objects.get(pk=app.pk)
        before = {r.pk for r in app.replicas.all()}
        deployments.restart(admin, app)
        restart = Rollout.objects.filter(app=app, kind="restart").get()
        wait_for(lambda: rolled(restart.release)() == "succeeded", 60, "the restart roll")
        assert not before & {r.pk for r in app.replicas.all()}  # every container was replaced

        v3 = deployments.scale(admin, App.objects.get(pk=app.pk), 2)
        assert wait_for(rolled(v3), 60, "the scale to 2") == "succeeded"
        wait_for(lambda: len(rotation.serving_ids(app)) == 2, 10, "two serving replicas")

        # listens on no port at all: never ready
        v4 = deployments.deploy(admin, App.objects.get(pk=app.pk), command=["sleep", "3600"], env={"V": "v4"})
        assert wait_for(rolled(v4), 60, f"v4 to fail\n{caddy.log_tail()}") == "failed"
        failed_at = time.monotonic()
        time.sleep(2 * REFRESH)
    finally:
        samples = load.stop()
    app = App.objects.get(pk=app.pk)
    v4.refresh_from_db()
    assert app.current_release.pk == v3.pk and app.current_release.status == "live"
    assert v4.status == "failed" and f"http_port {PORT}" in v4.status_message
    assert sorted(r.release_id for r in app.replicas.all()) == [v3.pk, v3.pk]
    assert {s.body for s in samples if s.at > failed_at} == {"v2"}  # v3 is v2 scaled: same containers
    failures = [s for s in samples if not s.ok]
    assert len(samples) > 200, "the load did not run"
    assert failures == [], f"{len(failures)} of {len(samples)} requests failed: {failures[:5]}"


# A minimal websocket server in busybox: nc runs the script per connection; it answers the
# handshake (Sec-WebSocket-Accept = base64(sha1(key + GUID))), then sends "$V <n>" as an
# unmasked text frame twice a second until the client goes.
WS_SCRIPT = r"""#!/bin/sh
key=""
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | tr -d ' ');; esac
done
[ -n "$key" ] || exit 0
guid=258EAFA5-E914-47DA-95CA-C5AB0DC85B11
accept=$(printf '%s' "$key$guid" | sha1sum | cut -d' ' -f1 | xxd -r -p | base64)
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
printf 'Sec-WebSocket-Accept: %s\r\n\r\n' "$accept"
n=0
while true; do
  msg="$V $n"
  printf "\\201\\$(printf '%03o' ${#msg})%s" "$msg" || exit 0
  n=$((n + 1))
  sleep 0.5
done
"""
WS_SERVER = [
    "sh",
    "-c",
    f'printf "%s" "$WS_SCRIPT" > /ws.sh && chmod +x /ws.sh && exec nc -ll -p {PORT} -e /ws.sh',
]


class WebSocket:
    """A websocket client on a raw socket (handshake with a ``Host`` header, then text frames)."""

    def __init__(self, port: int, hostname: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: {hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        accept = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if b":" in line]
        names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n") if b":" in line]
        assert dict(zip(names, accept, strict=True)).get(b"sec-websocket-accept") == want.encode(), head
        self.frames: list[tuple[float, str]] = []
        self.closed_at: float | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read(self) -> None:
        try:
            while True:
                first, second = self._exactly(2)
                assert first == 0x81 and second < 126, (first, second)  # unmasked short text frames
                self.frames.append((time.monotonic(), self._exactly(second).decode()))
        except (OSError, ConnectionError, AssertionError):
            self.closed_at = time.monotonic()

    def texts_after(self, since: float) -> list[str]:
        return [text for at, text in self.frames if at > since]

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)


def test_a_websocket_stays_open_across_a_deploy(
    agents: Callable[..., Agent], caddy: Caddy, settings: Any
) -> None:
    env = {
        "HOSTPANEL_ROLL_DRAIN_SECONDS": "12",  # long enough to watch the old connection after the switch
        "HOSTPANEL_ROLL_DEADLINE_SECONDS": "15",
        "HOSTPANEL_PORT_RANGE": private_port_range(),
    }
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS, settings.HOSTPANEL_PORT_RANGE = 12.0, env["HOSTPANEL_PORT_RANGE"]
    admin = web_tenant(agents, caddy, env, "wsco")
    spec = deployments.AppSpec(
        image="busybox:latest", command=WS_SERVER, env={"V": "v1", "WS_SCRIPT": WS_SCRIPT}, http_port=PORT
    )
    app = deployments.create_app(admin, Tenant.objects.get(slug="wsco"), "live", spec)
    hostname = "live-wsco.localhost"

    def first_text() -> str:
        try:
            ws = WebSocket(caddy.http_port, hostname)
        except (OSError, ConnectionError, AssertionError) as exc:
            return f"no websocket: {exc}"
        try:
            wait_for(lambda: ws.frames or ws.closed_at, 5, "a frame")
            return ws.frames[0][1].split()[0] if ws.frames else "closed"
        finally:
            ws.close()

    seen: list[str] = []
    wait_for(lambda: seen.append(first_text()) or seen[-1] == "v1", 60, "v1's websocket through caddy")
    old = WebSocket(caddy.http_port, hostname)
    try:
        v2 = deployments.deploy(admin, App.objects.get(pk=app.pk), env={"V": "v2", "WS_SCRIPT": WS_SCRIPT})
        wait_for(lambda: app.replicas.filter(drain_until__isnull=False).exists(), 60, "the switch to v2")
        wait_for(lambda: first_text() == "v2", 10, "caddy to send new websockets to v2")
        routed = time.monotonic()  # from here on Caddy's upstreams are the new replica only
        time.sleep(3 * REFRESH)
        assert old.closed_at is None, "the open websocket was closed by the route change"
        texts = old.texts_after(routed)
        assert len(texts) >= 4 and all(t.startswith("v1 ") for t in texts), texts
        counts = [int(text.split()[1]) for _, text in old.frames]
        assert counts == list(range(len(counts))), "frames were lost or the connection was remade"
        assert wait_for(rolled(v2), 60, "the roll to end") == "succeeded"
    finally:
        old.close()


def test_a_roll_moves_the_app_to_another_host_behind_one_caddy_without_a_failed_request(
    roll_env: dict[str, str], agents: Callable[..., Agent], caddy: Caddy
) -> None:
    admin = web_tenant(agents, caddy, roll_env, "multico")  # multico-h1 runs the Caddy
    agents("multico-h2", roll_env)  # a second host, no Caddy of its own
    wait_for(lambda: Host.objects.filter(name="multico-h2", state="up").exists(), 30, "the second agent")
    spec = deployments.AppSpec(image="busybox:latest", command=HTTPD, env={"V": "v1"}, http_port=PORT)
    app = deployments.create_app(admin, Tenant.objects.get(slug="multico"), "web", spec)
    hostname = "web-multico.localhost"
    wait_for(lambda: answers(caddy, hostname)() == "v1", 60, f"v1 through caddy\n{caddy.log_tail()}")
    (first,) = app.replicas.all()
    load = Load(lambda: f"http://127.0.0.1:{caddy.http_port}/", host=hostname).start()
    try:
        wait_for(lambda: len(load.samples) > 20, 20, "the load to run")
        v2 = deployments.deploy(admin, App.objects.get(pk=app.pk), env={"V": "v2"})
        (fresh,) = app.replicas.filter(release=v2)
        assert fresh.host_id != first.host_id  # the surge replica goes where the app has none
        assert wait_for(rolled(v2), 60, "v2 to roll") == "succeeded"
        switched = time.monotonic()
        wait_for(lambda: load.bodies_since(switched + REFRESH) == {"v2"}, 10, "only v2 to answer")
    finally:
        samples = load.stop()
    assert [r.host_id for r in app.replicas.all()] == [fresh.host_id]
    failures = [s for s in samples if not s.ok]
    assert len(samples) > 50 and failures == [], f"{len(failures)} of {len(samples)} failed: {failures[:5]}"
