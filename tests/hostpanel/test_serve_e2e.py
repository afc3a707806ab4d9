"""`python -m hostpanel.serve` as `make run` starts it: one address, HTTP served by gunicorn's
workers, /ws/ by daphne, a real Caddy in front; SIGTERM stops all three."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.tenants.models import Role
from hostpanel.tenants.services import create_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.stack import free_port, panel_env, shared_database_url, start_panel, stop_process, wait_for


def _get(url: str) -> tuple[int, list[str]]:
    """Status and ``Server`` headers of a GET of ``url`` (0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get_all("Server") or []
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_all("Server") or []
    except OSError:
        return 0, []


def _handshake(port: int, path: str) -> bytes:
    """The status line a WebSocket handshake for ``path`` gets."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        return s.recv(4096).split(b"\r\n", 1)[0]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.fixture
def panel(transactional_db: None, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m hostpanel.serve` on a free port (the test database; no Redis) and that port,
    answering /healthz; stopped afterwards."""
    if shutil.which("caddy") is None:
        if os.environ.get("CI"):
            pytest.fail("caddy is missing; `make install` installs it")
        pytest.skip("needs caddy (`make install`)")
    from django.conf import settings

    env = panel_env(
        shared_database_url(), "redis://:x@127.0.0.1:9/0", tmp_path / "var", settings.HOSTPANEL_SECRET_KEYS
    )
    port = free_port()
    log = tmp_path / "panel.log"
    proc = start_panel("127.0.0.1", port, env, log)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 60, f"the panel\n{log}")
        yield proc, port
    finally:
        stop_process(proc)


def test_one_address_http_to_gunicorn_sockets_to_daphne(panel: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = panel
    base = f"http://127.0.0.1:{port}"
    servers = [s.lower() for s in _get(base + "/healthz")[1]]
    assert "caddy" in servers and "gunicorn" in servers, servers  # gunicorn's answer through Caddy
    children = _children(proc.pid)
    assert len(children) == 3, children  # gunicorn's master, daphne, caddy
    # a client's own X-Forwarded-For is not believed: the audit log names the real peer
    tenant = TenantFactory(slug="acme")
    user = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _, secret = create_token(Actor(user=user), tenant, "ci")
    request = urllib.request.Request(
        f"{base}/api/v1/tenants/acme/secrets/",
        data=json.dumps({"name": "k", "value": "v"}).encode(),
        headers={
            "Authorization": f"Token {secret}",
            "Content-Type": "application/json",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    entry = AuditLog.objects.get(action="secret.create")
    assert entry.source_address == "127.0.0.1"
    # the socket is upgraded (daphne; gunicorn's WSGI workers never switch protocols) and the
    # consumer then closes it (no session)
    assert _handshake(port, "/ws/logs/1/") == b"HTTP/1.1 101 Switching Protocols"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    for child in children:
        wait_for(lambda child=child: not Path(f"/proc/{child}").exists(), 20, f"child {child} to end")


def test_the_servers_end_with_a_killed_supervisor(panel: tuple[subprocess.Popen[bytes], int]) -> None:
    """SIGKILL (e.g. `make stop` after its grace) leaves no gunicorn, daphne or Caddy behind."""
    proc, _ = panel
    children = _children(proc.pid)
    assert len(children) == 3, children
    proc.kill()
    proc.wait(10)
    for child in children:
        wait_for(lambda child=child: not Path(f"/proc/{child}").exists(), 20, f"child {child} to end")
