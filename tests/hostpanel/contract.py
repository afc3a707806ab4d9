"""ONE shared mixin that generates cross-tenant (404) and role (403) tests for a tenant resource.

A test class ``TestX(TenantResourceContract)`` says how to make one object of
a tenant, how to name it in a URL, and what to POST/PATCH; it inherits:

- an outsider (member of another tenant, or a token for another tenant) gets 404
  on the tenant's list and on its objects; another tenant's object through the
  caller's own tenant URL is 404 too; lists show only the tenant's objects;
- a member below ``read_role`` gets 403 on reads, below ``write_role`` 403 on
  create/update/delete; ``write_role`` itself succeeds;
- anonymous callers get 401.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.db.models import Model
from rest_framework.test import APIClient

from hostpanel.audit.services import Actor
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory

ROLES = [Role.VIEWER, Role.DEVELOPER, Role.OWNER]


def role_below(role: str) -> str | None:
    index = ROLES.index(Role(role))
    return ROLES[index - 1] if index else None


class TenantResourceContract:
    resource: ClassVar[str]  # the URL segment after /tenants/<slug>/
    read_role: ClassVar[str] = Role.VIEWER
    write_role: ClassVar[str] = Role.DEVELOPER
    can_create: ClassVar[bool] = True
    can_update: ClassVar[bool] = True
    can_delete: ClassVar[bool] = True
    update_method: ClassVar[str] = "patch"
    delete_status: ClassVar[int] = 204
    create_format: ClassVar[str] = "json"  # or "multipart" (uploads)

    # ---- hooks ----
    def make(self, tenant: Tenant) -> Model:
        raise NotImplementedError

    def key(self, obj: Model) -> str:
        return str(obj.pk)

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        raise NotImplementedError

    def update_payload(self, obj: Model) -> dict[str, Any]:
        raise NotImplementedError

    # ---- helpers ----
    def url(self, tenant: Tenant, obj: Model | None = None) -> str:
        base = f"/api/v1/tenants/{tenant.slug}/{self.resource}/"
        return base if obj is None else f"{base}{self.key(obj)}/"

    @staticmethod
    def client(user: Any) -> APIClient:
        c = APIClient()
        c.force_authenticate(user)
        return c

    @pytest.fixture
    def world(self, db: None, host: Any) -> dict[str, Any]:
        """Tenants A and B, a member of each role in A, a developer in B, an object in each."""
        a, b = TenantFactory(slug="tenant-a"), TenantFactory(slug="tenant-b")
        users = {role: MembershipFactory(tenant=a, role=role).user for role in ROLES}
        outsider = MembershipFactory(tenant=b, role=Role.OWNER).user
        return {
            "a": a,
            "b": b,
            "users": users,
            "outsider": outsider,
            "obj_a": self.make(a),
            "obj_b": self.make(b),
        }

    def items(self, response: Any) -> list[dict[str, Any]]:
        data = response.json()
        return data["results"] if isinstance(data, dict) and "results" in data else data

    # ---- generated tests: cross-tenant ----
    def test_outsider_gets_404_on_list_and_object(self, world: dict[str, Any]) -> None:
        c = self.client(world["outsider"])
        assert c.get(self.url(world["a"])).status_code == 404
        r = c.get(self.url(world["a"], world["obj_a"]))
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"

    def test_other_tenants_object_through_own_tenant_is_404(self, world: dict[str, Any]) -> None:
        c = self.client(world["outsider"])
        assert c.get(self.url(world["b"], world["obj_a"])).status_code == 404
        if self.can_delete:
            assert c.delete(self.url(world["b"], world["obj_a"])).status_code == 404
            assert type(world["obj_a"]).objects.filter(pk=world["obj_a"].pk).exists()

    def test_list_shows_only_own_tenant(self, world: dict[str, Any]) -> None:
        c = self.client(world["users"][Role.OWNER])
        r = c.get(self.url(world["a"]))
        assert r.status_code == 200
        keys = {str(item.get(self.list_key_field(), "")) for item in self.items(r)}
        assert self.key(world["obj_a"]) in keys
        assert self.key(world["obj_b"]) not in keys

    def list_key_field(self) -> str:
        return "id"

    def test_token_for_another_tenant_is_404(self, world: dict[str, Any]) -> None:
        user = world["users"][Role.OWNER]
        MembershipFactory(tenant=world["b"], user=user, role=Role.OWNER)
        _, secret = create_token(Actor(user=user), world["b"], "for-b")
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
        assert c.get(self.url(world["b"])).status_code == 200
        assert c.get(self.url(world["a"])).status_code == 404
        assert c.get(self.url(world["a"], world["obj_a"])).status_code == 404

    def test_anonymous_is_401(self, world: dict[str, Any]) -> None:
        assert APIClient().get(self.url(world["a"])).status_code == 401

    # ---- generated tests: roles ----
    def test_role_below_read_role_is_403(self, world: dict[str, Any]) -> None:
        below = role_below(self.read_role)
        if below is None:  # every member may read: then the lowest role really can
            assert self.client(world["users"][self.read_role]).get(self.url(world["a"])).status_code == 200
            return
        r = self.client(world["users"][below]).get(self.url(world["a"]))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"

    def test_read_role_may_read(self, world: dict[str, Any]) -> None:
        c = self.client(world["users"][self.read_role])
        assert c.get(self.url(world["a"])).status_code == 200

    def test_role_below_write_role_is_403_on_writes(self, world: dict[str, Any]) -> None:
        below = role_below(self.write_role)
        if below is None:  # every member may write: the lowest role's write is covered below
            self.test_write_role_may_write(world)
            return
        c = self.client(world["users"][below])
        a, obj = world["a"], world["obj_a"]
        if self.can_create:
            assert c.post(self.url(a), self.create_payload(a), format=self.create_format).status_code == 403
        if self.can_update:
            send = getattr(c, self.update_method)
            assert send(self.url(a, obj), self.update_payload(obj), format="json").status_code == 403
        if self.can_delete:
            assert c.delete(self.url(a, obj)).status_code == 403
            assert type(obj).objects.filter(pk=obj.pk).exists()

    def test_write_role_may_write(self, world: dict[str, Any]) -> None:
        c = self.client(world["users"][self.write_role])
        a, obj = world["a"], world["obj_a"]
        if self.can_create:
            r = c.post(self.url(a), self.create_payload(a), format=self.create_format)
            assert r.status_code == 201, r.json()
        if self.can_update:
            send = getattr(c, self.update_method)
            r = send(self.url(a, obj), self.update_payload(obj), format="json")
            assert r.status_code == 200, r.json()
        if self.can_delete:
            assert c.delete(self.url(a, obj)).status_code == self.delete_status
