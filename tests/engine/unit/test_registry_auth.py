"""The registry client's authentication against a scripted HTTP server (anonymous, basic, token flow).

The integration tests (tests/engine/privileged/test_registry_*.py and
tests/hostpanel/registry_client/) run the client against real registries; this
one pins down the 401 handling that is hard to provoke there.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.errors import ImageNotFound
from engine.registry.client import RegistryClient
from engine.registry.credentials import Credentials
from engine.registry.errors import AuthenticationFailed, RegistryUnreachable
from engine.registry.remote import Endpoint
from tests.engine.conftest import serving

USER, PASSWORD = "alice", "pw"


class _Registry(ThreadingHTTPServer):
    mode = "bearer"
    token_requests: list[dict[str, list[str]]]
    seen_auth: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Registry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _basic_ok(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        auth = self.headers.get("Authorization", "")
        self.server.seen_auth.append(auth)
        if url.path == "/token":
            query = parse_qs(url.query)
            self.server.token_requests.append(query)
            if not self._basic_ok():
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            scopes = " ".join(sorted(query.get("scope", [])))
            return self._send(200, json.dumps({"token": f"tok[{scopes}]"}).encode())
        repo = url.path.split("/manifests/")[0].removeprefix("/v2/")
        status_if_ok = 404 if url.path.endswith("/manifests/missing") else 200
        if self.server.mode == "basic":
            if self._basic_ok():
                return self._send(status_if_ok, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return self._send(401, b"", {"WWW-Authenticate": 'Basic realm="test"'})
        needed = f"repository:{repo}:pull"
        if auth.startswith("Bearer tok[") and needed in auth:
            return self._send(status_if_ok, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        challenge = f'Bearer realm="{realm}",service="unit",scope="{needed}"'
        return self._send(401, b"", {"WWW-Authenticate": challenge})


@pytest.fixture()
def registry() -> Iterator[_Registry]:
    server = _Registry(("127.0.0.1", 0), _Handler)
    server.token_requests, server.seen_auth = [], []
    with serving(server):
        yield server


def _client(server: _Registry, creds: Credentials | None) -> RegistryClient:
    return RegistryClient(Endpoint(f"127.0.0.1:{server.server_address[1]}", "http"), creds)


def _get(client: RegistryClient, repo: str, ref: str = "1") -> int:
    with client.request("GET", f"/v2/{repo}/manifests/{ref}", scopes=[f"repository:{repo}:pull"]) as r:
        r.read_limited()
        return r.status


def test_token_flow_fetches_one_token_per_scope(registry: _Registry) -> None:
    client = _client(registry, Credentials(USER, PASSWORD))
    assert _get(client, "team/app") == 200
    assert _get(client, "team/app") == 200  # cached: no second token request
    assert len(registry.token_requests) == 1
    assert registry.token_requests[0]["service"] == ["unit"]
    assert registry.token_requests[0]["scope"] == ["repository:team/app:pull"]
    assert _get(client, "team/other") == 200  # another scope: a new token
    assert [q["scope"] for q in registry.token_requests] == [
        ["repository:team/app:pull"],
        ["repository:team/other:pull"],
    ]
    assert registry.seen_auth[0] == ""  # the first try is anonymous, then the challenge is answered


def test_token_flow_with_wrong_password_names_the_user_and_the_fix(registry: _Registry) -> None:
    client = _client(registry, Credentials(USER, "wrong", source="/root/auth.json"))
    with pytest.raises(AuthenticationFailed) as exc:
        _get(client, "team/app")
    text = str(exc.value)
    assert "'alice'" in text and "/root/auth.json" in text and "hpctl login 127.0.0.1:" in text
    assert "wrong" not in text


def test_anonymous_client_is_told_to_log_in(registry: _Registry) -> None:
    with pytest.raises(AuthenticationFailed, match="no credentials were used: log in with: hpctl login"):
        _get(_client(registry, None), "team/app")


def test_basic_auth(registry: _Registry) -> None:
    registry.mode = "basic"
    client = _client(registry, Credentials(USER, PASSWORD))
    assert _get(client, "team/app") == 200
    assert _get(client, "team/app") == 200
    assert registry.seen_auth[0] == "" and registry.seen_auth[-1].startswith("Basic ")
    assert registry.token_requests == []
    with pytest.raises(AuthenticationFailed, match="requires authentication"):
        _get(_client(registry, None), "team/app")
    with pytest.raises(AuthenticationFailed, match="refused access"):
        _get(_client(registry, Credentials(USER, "nope")), "team/app")


def test_not_found_names_the_reference(registry: _Registry) -> None:
    client = _client(registry, Credentials(USER, PASSWORD))
    response = client.request("GET", "/v2/team/app/manifests/missing", scopes=["repository:team/app:pull"])
    with pytest.raises(
        ImageNotFound, match=r"no image 'reg/team/app:missing' in registry .*MANIFEST_UNKNOWN"
    ):
        client.expect(response, [200], "GET manifest", "reg/team/app:missing")


def test_unreachable_registry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RegistryClient(Endpoint(f"127.0.0.1:{port}", "http"))
    with pytest.raises(RegistryUnreachable, match=rf"cannot reach registry 127.0.0.1:{port}.*refused"):
        client.request("GET", "/v2/")


def test_https_to_a_plain_http_registry_suggests_tls_verify_false(registry: _Registry) -> None:
    client = RegistryClient(Endpoint(f"127.0.0.1:{registry.server_address[1]}"))
    with pytest.raises(RegistryUnreachable, match="--tls-verify=false"):
        client.request("GET", "/v2/")
    creds = Credentials(USER, PASSWORD)
    insecure = RegistryClient(Endpoint(f"127.0.0.1:{registry.server_address[1]}"), creds, insecure=True)
    registry.mode = "basic"
    with insecure.request("GET", "/v2/") as r:  # falls back to plain http
        assert r.status == 200
    assert insecure.scheme == "http"
