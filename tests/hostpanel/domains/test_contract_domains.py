"""The shared cross-tenant (404) and role (403) contract for ``/tenants/<t>/apps/<app>/domains/``."""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.domains import services
from hostpanel.domains.models import Domain
from hostpanel.tenants.models import Tenant
from tests.hostpanel.contract import TenantResourceContract
from tests.hostpanel.factories import UserFactory


class TestDomains(TenantResourceContract):
    resource = "domains"
    can_update = False

    def make(self, tenant: Tenant) -> Model:
        admin = Actor(user=UserFactory(username=f"domains-admin-{tenant.slug}", is_staff=True))
        spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "1"], http_port=80)
        app = deployments.create_app(admin, tenant, "web", spec)  # the same app name in both tenants
        return services.add_domain(admin, app, f"www.{tenant.slug}.example.com")

    def url(self, tenant: Tenant, obj: Model | None = None) -> str:
        base = f"/api/v1/tenants/{tenant.slug}/apps/web/domains/"
        return base if obj is None else f"{base}{self.key(obj)}/"

    def key(self, obj: Model) -> str:
        assert isinstance(obj, Domain)
        return obj.name

    def list_key_field(self) -> str:
        return "name"

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": f"new.{tenant.slug}.example.org"}
