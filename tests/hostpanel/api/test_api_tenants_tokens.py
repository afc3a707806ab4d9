"""Tenants, members, tokens and quotas through the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.tenants.models import ApiToken, Membership, Quota, Role, Tenant
from hostpanel.tenants.services import create_token, hash_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def token_client(secret: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return c


def test_admin_creates_tenant_with_default_quota_and_owner(api: Any, admin_user: Any) -> None:
    owner = UserFactory(username="alice")
    r = api(admin_user).post(
        "/api/v1/tenants/", {"slug": "shop", "name": "Shop", "owner": "alice"}, format="json"
    )
    assert r.status_code == 201, r.json()
    tenant = Tenant.objects.get(slug="shop")
    assert Quota.objects.filter(tenant=tenant).exists()
    assert Membership.objects.get(tenant=tenant, user=owner).role == Role.OWNER
    assert AuditLog.objects.filter(action="tenant.create", tenant=tenant, result="ok").exists()


def test_non_admin_cannot_create_tenant_and_gets_one_error_format(api: Any) -> None:
    r = api(UserFactory()).post("/api/v1/tenants/", {"slug": "x"}, format="json")
    assert r.status_code == 403
    assert set(r.json()["error"]) == {"code", "message", "details"}


def test_invalid_slug_is_400_with_field_details(api: Any, admin_user: Any) -> None:
    r = api(admin_user).post("/api/v1/tenants/", {"slug": "Bad Slug!"}, format="json")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid"
    assert "slug" in r.json()["error"]["details"]


@pytest.mark.parametrize("slug", ["default", "library"])
def test_reserved_slugs_are_refused_so_no_tenant_shares_the_operators_names(
    api: Any, admin_user: Any, slug: str
) -> None:
    """'default' is the engine's operator tenant (hpctl's containers) and 'library/' the base images."""
    r = api(admin_user).post("/api/v1/tenants/", {"slug": slug}, format="json")
    assert r.status_code == 400
    assert "reserved" in r.json()["error"]["message"]
    assert not Tenant.objects.filter(slug=slug).exists()


def test_tenant_list_shows_only_own_tenants(api: Any) -> None:
    mine = MembershipFactory(tenant=TenantFactory(slug="mine")).user
    TenantFactory(slug="theirs")
    slugs = [t["slug"] for t in api(mine).get("/api/v1/tenants/").json()["results"]]
    assert slugs == ["mine"]


def test_token_is_shown_once_stored_hashed_and_authenticates(api: Any, tenant: Tenant) -> None:
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    r = api(user).post(f"/api/v1/tenants/{tenant.slug}/tokens/", {"name": "ci"}, format="json")
    assert r.status_code == 201
    secret = r.json()["secret"]
    token = ApiToken.objects.get(pk=r.json()["id"])
    assert token.digest == hash_token(secret) and secret not in token.digest
    listed = api(user).get(f"/api/v1/tenants/{tenant.slug}/tokens/").json()["results"]
    assert "secret" not in listed[0]
    assert token_client(secret).get(f"/api/v1/tenants/{tenant.slug}/apps/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_expired_and_revoked_tokens_are_refused(tenant: Tenant) -> None:
    user = MembershipFactory(tenant=tenant).user
    token, secret = create_token(
        Actor(user=user), tenant, "t", expires_at=timezone.now() + timedelta(hours=1)
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = token_client(secret).get("/api/v1/tenants/")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_failed"
    token2, secret2 = create_token(Actor(user=user), tenant, "t2")
    c = token_client(secret2)
    assert c.delete(f"/api/v1/tenants/{tenant.slug}/tokens/{token2.pk}/").status_code == 204
    assert c.get("/api/v1/tenants/").status_code == 401
    assert token_client("hp_nonsense").get("/api/v1/tenants/").status_code == 401


def test_token_works_only_while_user_is_a_member(tenant: Tenant) -> None:
    membership = MembershipFactory(tenant=tenant)
    _, secret = create_token(Actor(user=membership.user), tenant, "t")
    membership.delete()
    assert token_client(secret).get(f"/api/v1/tenants/{tenant.slug}/apps/").status_code == 404


def test_viewer_cannot_revoke_anothers_token_but_owner_can(api: Any, tenant: Tenant) -> None:
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    token, _ = create_token(Actor(user=dev), tenant, "dev")
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    url = f"/api/v1/tenants/{tenant.slug}/tokens/{token.pk}/"
    assert api(viewer).delete(url).status_code == 404  # not even visible to a viewer
    assert api(owner).delete(url).status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_last_owner_cannot_leave(api: Any, tenant: Tenant) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER)
    r = api(owner.user).patch(
        f"/api/v1/tenants/{tenant.slug}/members/{owner.pk}/", {"role": "viewer"}, format="json"
    )
    assert r.status_code == 409
    assert "last owner" in r.json()["error"]["message"]


def test_quota_members_read_admins_write(
    api: Any, tenant: Tenant, admin_user: Any, sent_reconciles: list[Any]
) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    url = f"/api/v1/tenants/{tenant.slug}/quota/"
    body = api(owner).get(url).json()
    assert body["containers"] == 20 and body["usage"]["containers"] == 0
    assert api(owner).patch(url, {"containers": 99}, format="json").status_code == 403
    r = api(admin_user).patch(url, {"containers": 3}, format="json")
    assert r.status_code == 200 and r.json()["containers"] == 3
    assert api(UserFactory()).get(url).status_code == 404


def test_hosts_are_for_admins(api: Any, admin_user: Any, tenant: Tenant) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    assert api(owner).get("/api/v1/hosts/").status_code == 403
    r = api(admin_user).post(
        "/api/v1/hosts/", {"name": "h9", "cpu_millis": 1000, "memory_bytes": 2**30}, format="json"
    )
    assert r.status_code == 201, r.json()
    assert api(admin_user).get("/api/v1/hosts/").json()["count"] == 1


def test_openapi_schema_and_swagger_ui_are_served(client: Any) -> None:
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/tenants/{tenant_slug}/apps/{name}/rollback/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"drf_spectacular_sidecar" in docs.content  # local assets, no CDN


def test_swagger_ui_assets_are_served_without_debug(client: Any) -> None:
    r = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert r.status_code == 200


def test_global_audit_is_for_admins(api: Any, admin_user: Any, tenant: Tenant) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    api(admin_user).post(
        "/api/v1/hosts/", {"name": "h7", "cpu_millis": 1000, "memory_bytes": 2**30}, format="json"
    )
    assert api(owner).get("/api/v1/audit/").status_code == 403
    actions = [e["action"] for e in api(admin_user).get("/api/v1/audit/").json()["results"]]
    assert "host.create" in actions


def test_a_token_never_carries_admin_powers(admin_user: Any, tenant: Tenant) -> None:
    MembershipFactory(tenant=tenant, user=admin_user, role=Role.OWNER)
    _, secret = create_token(Actor(user=admin_user), tenant, "admin-automation")
    c = token_client(secret)
    assert c.get(f"/api/v1/tenants/{tenant.slug}/apps/").status_code == 200
    assert c.get("/api/v1/hosts/").status_code == 403
    assert (
        c.patch(f"/api/v1/tenants/{tenant.slug}/quota/", {"containers": 99}, format="json").status_code == 403
    )
    assert [t["slug"] for t in c.get("/api/v1/tenants/").json()["results"]] == [tenant.slug]


def test_admin_pages_load(client: Any, admin_user: Any, tenant: Tenant, make_app: Any) -> None:
    make_app(tenant)
    client.force_login(admin_user)
    for page in (
        "tenants/tenant",
        "hosts/host",
        "deployments/app",
        "deployments/replica",
        "audit/auditlog",
        "secrets/secret",
    ):
        assert client.get(f"/admin/{page}/").status_code == 200, page


def test_openapi_schema_generates_without_warnings() -> None:
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_audit_records_the_source_address_behind_trusted_proxies_only(
    api: Any, admin_user: Any, settings: Any
) -> None:
    settings.HOSTPANEL_TRUSTED_PROXIES = ["10.0.0.1"]
    c = api(admin_user)
    c.post(
        "/api/v1/tenants/",
        {"slug": "t1"},
        format="json",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
    )
    c.post(
        "/api/v1/tenants/",
        {"slug": "t2"},
        format="json",
        REMOTE_ADDR="5.6.7.8",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
    )
    addresses = dict(
        AuditLog.objects.filter(action="tenant.create").values_list("tenant__slug", "source_address")
    )
    assert addresses == {"t1": "1.2.3.4", "t2": "5.6.7.8"}


def test_hosts_show_what_their_replicas_request(
    api: Any, admin_user: Any, tenant: Tenant, make_app: Any
) -> None:
    make_app(tenant, replicas=2, cpu_millis=300, memory_bytes=64 * 1024**2)
    (h1,) = api(admin_user).get("/api/v1/hosts/").json()["results"]
    assert (h1["replicas"], h1["used_cpu_millis"], h1["used_memory_bytes"]) == (2, 600, 128 * 1024**2)


def test_egress_allow_list_is_set_by_admins_only_and_validated(
    api: Any, tenant: Tenant, admin_user: Any, sent_reconciles: list[Any]
) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    url = f"/api/v1/tenants/{tenant.slug}/quota/"
    assert api(owner).get(url).json()["egress_allow"] == []
    # a tenant cannot open the LAN or the metadata address for itself
    assert api(owner).patch(url, {"egress_allow": ["169.254.169.254/32"]}, format="json").status_code == 403
    r = api(admin_user).patch(url, {"egress_allow": ["10.20.0.0/16", "192.168.1.9"]}, format="json")
    assert r.status_code == 200 and r.json()["egress_allow"] == ["10.20.0.0/16", "192.168.1.9/32"]
    for bad in (["10.20.0.1/16"], ["lan"], "10.0.0.0/8", [1]):
        r = api(admin_user).patch(url, {"egress_allow": bad}, format="json")
        assert r.status_code == 400, bad
        assert "egress_allow" in str(r.json())
    r = api(admin_user).patch(url, {"egress_allow": ["10.20.0.1/16"]}, format="json")
    assert "invalid allow-list entry '10.20.0.1/16'" in r.json()["error"]["message"]
    assert api(owner).get(url).json()["egress_allow"] == ["10.20.0.0/16", "192.168.1.9/32"]
