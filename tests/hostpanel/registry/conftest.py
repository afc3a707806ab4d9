"""Fixtures of the registry tests: a registry root per test, tenants, tokens, /v2/ clients."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from hostpanel.audit.services import Actor
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Registry:
    """A /v2/ client with one Authorization header (or none)."""

    def __init__(self, authorization: str | None) -> None:
        self.client = Client()
        self.authorization = authorization

    def request(
        self,
        method: str,
        path: str,
        data: bytes = b"",
        content_type: str = "application/octet-stream",
        **headers: str,
    ) -> Any:
        if self.authorization:
            headers.setdefault("authorization", self.authorization)
        return self.client.generic(method, path, data, content_type=content_type, headers=headers)

    def push_blob(self, name: str, data: bytes) -> str:
        digest = digest_of(data)
        r = self.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data)
        assert r.status_code == 201, r.content
        return digest

    def manifest_for(
        self, name: str, layers: list[bytes], config: bytes = b'{"architecture":"amd64"}'
    ) -> bytes:
        """Push the blobs and return an OCI manifest document referring to them."""
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.push_blob(name, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.push_blob(name, layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
        return json.dumps(doc).encode()

    def push_image(self, name: str, tag: str, layers: list[bytes] | None = None) -> str:
        body = self.manifest_for(name, layers or [b"layer of " + name.encode() + b":" + tag.encode()])
        r = self.request("PUT", f"/v2/{name}/manifests/{tag}", body, content_type=OCI_MANIFEST)
        assert r.status_code == 201, r.content
        return digest_of(body)


def error_code(response: Any) -> str:
    return str(response.json()["errors"][0]["code"])


@pytest.fixture(autouse=True)
def registry_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    settings.HOSTPANEL_REGISTRY_ROOT = root
    settings.VAR_DIR = tmp_path
    return root


@pytest.fixture
def acme(db: None) -> Tenant:
    return TenantFactory(slug="acme")


@pytest.fixture
def globex(db: None) -> Tenant:
    return TenantFactory(slug="globex")


@pytest.fixture
def token_for() -> Callable[..., str]:
    """A fresh API token secret for a new member of ``tenant`` with ``role`` (or for ``user``)."""

    def make(tenant: Tenant, role: str = Role.DEVELOPER, user: Any = None) -> str:
        if user is None:
            user = MembershipFactory(tenant=tenant, role=role).user
        _, secret = create_token(Actor(user=user), tenant, "registry")
        return secret

    return make


@pytest.fixture
def reg(token_for: Callable[..., str]) -> Callable[..., Registry]:
    """``reg(tenant, role)``: a registry client authenticated by basic auth with a new member's token."""

    def make(
        tenant: Tenant | None = None, role: str = Role.DEVELOPER, authorization: str | None = None
    ) -> Registry:
        if tenant is not None:
            authorization = basic("anyone", token_for(tenant, role))
        return Registry(authorization)

    return make


# ---- the Docker token flow, as the conformance suite's client speaks it ----------------------
@dataclass(frozen=True)
class Answer:
    """One HTTP answer, whichever transport carried it."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json()["errors"][0]["code"])


Send = Callable[[str, str, bytes, str, dict[str, str]], Answer]
"""``send(method, path, body, content_type, headers)``: one request over some transport."""

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def django_send(client: Client | None = None) -> Send:
    """Requests through Django's test client (in this process)."""
    django_client = client or Client()

    def send(method: str, path: str, body: bytes, content_type: str, headers: dict[str, str]) -> Answer:
        r = django_client.generic(method, path, body, content_type=content_type, headers=headers)
        body = b"".join(r.streaming_content) if r.streaming else r.content
        return Answer(r.status_code, {k.lower(): v for k, v in r.items()}, body)

    return send


def http_send(address: str, context: ssl.SSLContext | None = None) -> Send:
    """Requests over a real connection to ``address`` (``host:port``), TLS when ``context`` is given."""
    host, port = address.rsplit(":", 1)

    def send(method: str, path: str, body: bytes, content_type: str, headers: dict[str, str]) -> Answer:
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, int(port), context=context, timeout=60)
            if context is not None
            else http.client.HTTPConnection(host, int(port), timeout=60)
        )
        try:
            all_headers = {"Content-Type": content_type, **headers} if body else dict(headers)
            conn.request(method, path, body=body or None, headers=all_headers)
            r = conn.getresponse()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    return send


class TokenFlow:
    """A registry client that authenticates only through the Docker token flow.

    Like the OCI conformance suite's client: it sends each request with its
    current bearer token (none at first); on ``401`` with a Bearer challenge it
    asks the challenge's realm for a token for exactly the challenge's scope,
    with its basic credentials, and sends the request once more.
    """

    def __init__(self, send: Send, username: str, password: str) -> None:
        self.send = send
        self.basic = basic(username, password)
        self.bearer: str | None = None
        self.scopes_asked: list[str] = []

    def request(
        self, method: str, path: str, data: bytes = b"", content_type: str = "application/octet-stream"
    ) -> Answer:
        answer = self._send(method, path, data, content_type)
        challenge = answer.headers.get("www-authenticate", "")
        if answer.status != 401 or not challenge.startswith("Bearer "):
            return answer
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        scope = params.get("scope", "")
        self.scopes_asked.append(scope)
        realm = urllib.parse.urlsplit(params["realm"]).path
        query = urllib.parse.urlencode({"service": params.get("service", ""), "scope": scope})
        token = self.send("GET", f"{realm}?{query}", b"", "", {"Authorization": self.basic})
        if token.status != 200:
            return answer
        self.bearer = str(token.json()["token"])
        return self._send(method, path, data, content_type)

    def _send(self, method: str, path: str, data: bytes, content_type: str) -> Answer:
        headers = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        return self.send(method, path, data, content_type, headers)


class BasicAuth:
    """A registry client that sends its basic credentials with every request (no token flow)."""

    def __init__(self, send: Send, username: str, password: str) -> None:
        self.send = send
        self.basic = basic(username, password)

    def request(
        self, method: str, path: str, data: bytes = b"", content_type: str = "application/octet-stream"
    ) -> Answer:
        return self.send(method, path, data, content_type, {"Authorization": self.basic})


def delete_workflow(client: TokenFlow | BasicAuth, name: str, tag: str = "tagtest0") -> dict[str, Any]:
    """The conformance suite's content-management workflow (v1.0.1), step by step.

    Setup: a config blob and a layer (POST then PUT ?digest=), a manifest
    pushed under ``tag``, the tag count. Then: DELETE the tag, DELETE the
    manifest by digest, GET it, list the tags, DELETE both blobs, GET them.
    Returns each step's status (and the tag counts) for the caller to assert.
    """
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"a layer of " + name.encode() + b" " + tag.encode()
    steps: dict[str, Any] = {}
    for label, data in (("config", config), ("layer", layer)):
        started = client.request("POST", f"/v2/{name}/blobs/uploads/")
        assert started.status == 202, (label, started.status, started.body)
        location = urllib.parse.urlsplit(started.headers["location"])
        put = client.request("PUT", f"{location.path}?digest={digest_of(data)}", data)
        assert put.status == 201, (label, put.status, put.body)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    pushed = client.request("PUT", f"/v2/{name}/manifests/{tag}", manifest, OCI_MANIFEST)
    assert pushed.status == 201, (pushed.status, pushed.body)
    steps["tags before"] = len(client.request("GET", f"/v2/{name}/tags/list").json()["tags"])
    steps["delete tag"] = client.request("DELETE", f"/v2/{name}/manifests/{tag}").status
    steps["delete manifest"] = client.request("DELETE", f"/v2/{name}/manifests/{digest_of(manifest)}").status
    steps["get manifest"] = client.request("GET", f"/v2/{name}/manifests/{digest_of(manifest)}").status
    steps["tags after"] = len(client.request("GET", f"/v2/{name}/tags/list").json()["tags"])
    steps["delete config"] = client.request("DELETE", f"/v2/{name}/blobs/{digest_of(config)}").status
    steps["delete layer"] = client.request("DELETE", f"/v2/{name}/blobs/{digest_of(layer)}").status
    steps["get config"] = client.request("GET", f"/v2/{name}/blobs/{digest_of(config)}").status
    steps["get layer"] = client.request("GET", f"/v2/{name}/blobs/{digest_of(layer)}").status
    steps["digests"] = [digest_of(manifest), digest_of(config), digest_of(layer)]
    return steps


DELETED = {
    "delete tag": 202,
    "delete manifest": 202,
    "get manifest": 404,
    "delete config": 202,
    "delete layer": 202,
    "get config": 404,
    "get layer": 404,
}
"""What each step of :func:`delete_workflow` answers on a registry whose deletes work."""
