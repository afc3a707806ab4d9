"""Which apps use a resource: the resources ask through tenants.signals.apps_using (they sit below
deployments and never import it); deployments answers from the apps' current releases."""

from __future__ import annotations

from typing import Any

from hostpanel.secrets import services as secrets
from hostpanel.tenants.models import Tenant
from hostpanel.tenants.signals import apps_using
from hostpanel.volumes import services as volumes
from tests.hostpanel.factories import TenantFactory

GIB = 1024**3


def test_an_image_is_used_by_the_apps_of_its_tenant_or_of_any(
    tenant: Tenant, admin_actor: Any, make_app: Any
) -> None:
    make_app(tenant, "web")
    make_app(tenant, "worker", image="busybox:latest")
    make_app(TenantFactory(slug="beta"), "api")
    assert apps_using("image", "busybox:latest", tenant) == ["web", "worker"]
    assert apps_using("image", "busybox:latest") == ["api", "web", "worker"]  # any tenant
    assert apps_using("image", "busybox:1.36", tenant) == []


def test_secrets_and_volumes_are_used_by_the_apps_that_name_them(
    tenant: Tenant, admin_actor: Any, make_app: Any
) -> None:
    secrets.create_secret(admin_actor, tenant, "token", "v")
    volumes.create_volume(admin_actor, tenant, "data", GIB)
    make_app(tenant, "web", secrets=[{"name": "token", "env": "TOKEN"}])
    make_app(tenant, "db", volumes=[{"name": "data", "path": "/data"}])
    assert apps_using("secret", "token", tenant) == ["web"]
    assert apps_using("volume", "data", tenant) == ["db"]
    assert apps_using("volume", "token", tenant) == []  # a volume is not a secret of the same name
    other = TenantFactory(slug="beta")
    assert apps_using("secret", "token", other) == []  # another tenant's app of that name is not its
