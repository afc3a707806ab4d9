"""Cross-tenant (404) and role (403) tests for every tenant resource, from the one shared mixin."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Model

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor, record
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.images.models import Image
from hostpanel.secrets import services as secrets
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant
from hostpanel.tenants.services import create_token
from hostpanel.volumes.models import Volume
from tests.hostpanel.contract import TenantResourceContract
from tests.hostpanel.factories import MembershipFactory, UserFactory


def _admin() -> Actor:
    return Actor(user=UserFactory(username="contract-admin", is_staff=True))


class TestApps(TenantResourceContract):
    resource = "apps"

    def make(self, tenant: Tenant) -> Model:
        return deployments.create_app(
            _admin(),
            tenant,
            f"app-{tenant.slug}",
            deployments.AppSpec(image="busybox:latest", command=["sleep", "1"]),
        )

    def key(self, obj: Model) -> str:
        assert isinstance(obj, App)
        return obj.name

    def list_key_field(self) -> str:
        return "name"

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "new-app", "image": "busybox:latest", "command": ["sleep", "60"]}

    def update_payload(self, obj: Model) -> dict[str, Any]:
        return {"env": {"GREETING": "hi"}}


class TestContainers(TenantResourceContract):
    resource = "containers"
    can_create = can_update = can_delete = False

    def make(self, tenant: Tenant) -> Model:
        app = deployments.create_app(
            _admin(), tenant, f"c-{tenant.slug}", deployments.AppSpec(image="busybox:latest")
        )
        return Replica.objects.get(app=app)


class TestSecrets(TenantResourceContract):
    resource = "secrets"
    update_method = "put"

    def make(self, tenant: Tenant) -> Model:
        return secrets.create_secret(_admin(), tenant, f"key-{tenant.slug}", "value")

    def key(self, obj: Model) -> str:
        return str(obj.name)  # type: ignore[attr-defined]

    def list_key_field(self) -> str:
        return "name"

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "new-secret", "value": "hunter2"}

    def update_payload(self, obj: Model) -> dict[str, Any]:
        return {"value": "changed"}


class TestMembers(TenantResourceContract):
    resource = "members"
    write_role = Role.OWNER

    def make(self, tenant: Tenant) -> Model:
        return MembershipFactory(tenant=tenant, role=Role.VIEWER)

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"username": UserFactory(username="newcomer").username, "role": "viewer"}

    def update_payload(self, obj: Model) -> dict[str, Any]:
        return {"role": "developer"}


class TestTokens(TenantResourceContract):
    resource = "tokens"
    write_role = Role.VIEWER
    can_update = False
    can_delete = False  # revoking: own tokens, or an owner (tests in test_api_tokens.py)

    def make(self, tenant: Tenant) -> Model:
        user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
        token, _ = create_token(Actor(user=user), tenant, "ci")
        return token

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "automation"}


class TestImages(TenantResourceContract):
    resource = "images"
    can_update = False
    create_format = "multipart"

    @pytest.fixture(autouse=True)
    def uploads_in_tmp(self, settings: Any, tmp_path: Any) -> None:
        settings.VAR_DIR = tmp_path

    def make(self, tenant: Tenant) -> Model:
        return Image.objects.create(tenant=tenant, reference=f"{tenant.slug}/app:1")

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "app:2", "archive": SimpleUploadedFile("app.tar", b"not really a tar")}


class TestVolumes(TenantResourceContract):
    resource = "volumes"
    can_update = False

    def make(self, tenant: Tenant) -> Model:
        return Volume.objects.create(tenant=tenant, name=f"data-{tenant.slug}", size_bytes=2**30)

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "new-data", "size_bytes": 2**30}


class TestAudit(TenantResourceContract):
    resource = "audit"
    read_role = write_role = Role.OWNER
    can_create = can_update = can_delete = False

    def make(self, tenant: Tenant) -> Model:
        return record(_admin(), "test.event", tenant=tenant, obj=tenant)


def _import_contract_modules() -> None:
    """Import every test module under tests/hostpanel that subclasses the mixin, so the check below
    sees contract classes kept beside their app's tests however pytest was started (one directory,
    one file or the whole suite)."""
    root = Path(__file__).resolve().parents[3]
    for path in sorted((root / "tests" / "hostpanel").rglob("test_*.py")):
        if "(TenantResourceContract)" in path.read_text(encoding="utf-8"):
            importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_every_tenant_resource_has_a_contract_test() -> None:
    from hostpanel.api.urls import router

    _import_contract_modules()
    covered = {cls.resource for cls in _all_subclasses(TenantResourceContract)}
    tenant_resources = {
        prefix.rsplit("/", 1)[1] for prefix, _, _ in router.registry if "tenant_slug" in prefix
    }
    assert tenant_resources <= covered, f"no contract test for {tenant_resources - covered}"
    assert {AuditLog, ApiToken, Membership}  # the models the mixin covers above
