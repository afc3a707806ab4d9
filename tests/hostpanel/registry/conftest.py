"""Fixtures of the registry tests: a registry root per test, tenants, tokens and a /v2/ client."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
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
