"""The OpenAPI schema states the constraints the API enforces (what schemathesis' positive-data checks
found looser than the validation): each documented rule is checked against the API itself."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hostpanel.tenants.models import Membership, Role, Tenant
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec(api: Any, admin_user: Any) -> dict[str, Any]:
    response = api(admin_user).get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def component(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]  # type: ignore[no-any-return]


@pytest.fixture
def owner(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.OWNER).user


def test_request_bodies_refuse_unknown_fields_and_say_so(spec: dict[str, Any], api: Any, owner: Any) -> None:
    strict = [n for n, c in spec["components"]["schemas"].items() if n.endswith("Request")]
    assert len(strict) > 15
    assert all(component(spec, n).get("additionalProperties") is False for n in strict), [
        n for n in strict if component(spec, n).get("additionalProperties") is not False
    ]
    r = api(owner).post("/api/v1/tenants/acme/secrets/", {"name": "a", "value": "v", "x": 1}, format="json")
    assert r.status_code == 400 and r.json()["error"]["details"] == {"x": ["unknown field"]}


def test_patch_of_a_tenant_and_a_member_takes_an_empty_body(
    spec: dict[str, Any], api: Any, owner: Any, tenant: Tenant
) -> None:
    assert "required" not in component(spec, "PatchedTenantUpdateRequest")
    assert "required" not in component(spec, "PatchedRoleRequest")
    r = api(owner).patch(f"/api/v1/tenants/{tenant.slug}/", {}, format="json")
    assert r.status_code == 200 and r.json()["slug"] == tenant.slug
    membership = Membership.objects.get(user=owner)
    r = api(owner).patch(f"/api/v1/tenants/{tenant.slug}/members/{membership.pk}/", {}, format="json")
    assert r.status_code == 200 and r.json()["role"] == "owner"
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    assert api(viewer).patch(f"/api/v1/tenants/{tenant.slug}/", {}, format="json").status_code == 403


def test_app_network_and_restart_policy(spec: dict[str, Any], api: Any, owner: Any, host: Any) -> None:
    props = component(spec, "AppCreateRequest")["properties"]
    assert component(spec, "NetworkEnum")["enum"] == ["none", "bridge"]
    pattern = props["restart_policy"]["pattern"]
    url = "/api/v1/tenants/acme/apps/"
    for i, (policy, ok) in enumerate(
        [("on-failure:999999", True), ("no", True), ("on-failure:1234567", False), ("no:3", False)]
    ):
        assert bool(re.fullmatch(pattern, policy)) is ok
        body = {"name": f"a{i}", "image": "busybox:latest", "restart_policy": policy, "replicas": 0}
        r = api(owner).post(url, body, format="json")
        assert r.status_code == (201 if ok else 400), r.json()
        if not ok:
            assert "restart policy" in r.json()["error"]["message"]


def test_volume_size_bounds(spec: dict[str, Any], api: Any, owner: Any) -> None:
    size = component(spec, "VolumeRequest")["properties"]["size_bytes"]
    url = "/api/v1/tenants/acme/volumes/"
    r = api(owner).post(url, {"name": "small", "size_bytes": size["minimum"] - 1}, format="json")
    assert r.status_code == 400 and "size_bytes" in r.json()["error"]["details"]
    r = api(owner).post(url, {"name": "huge", "size_bytes": size["maximum"] + 1}, format="json")
    assert r.status_code == 400 and "size_bytes" in r.json()["error"]["details"]
    assert (
        api(owner).post(url, {"name": "ok", "size_bytes": size["minimum"]}, format="json").status_code == 201
    )


def test_image_and_build_names(spec: dict[str, Any], api: Any, owner: Any) -> None:
    image = component(spec, "ImageUploadRequest")["properties"]["name"]
    build = component(spec, "BuildRequestRequest")["properties"]
    assert image["pattern"] == build["name"]["pattern"] and not re.fullmatch(image["pattern"], "Bad/Name")
    assert build["build_args"] == {"type": "object", "additionalProperties": {"type": "string"}}
    r = api(owner).post(
        "/api/v1/tenants/acme/builds/", {"name": "Bad/Name", "dockerfile_text": "FROM x"}, format="json"
    )
    assert r.status_code == 400 and "name" in r.json()["error"]["details"]


def test_usage_times_are_date_times(spec: dict[str, Any], api: Any, owner: Any) -> None:
    params = spec["paths"]["/api/v1/tenants/{tenant_slug}/usage/"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("format") for p in params if p["in"] == "query"} == {
        "since": "date-time",
        "until": "date-time",
    }
    r = api(owner).get("/api/v1/tenants/acme/usage/?since=2026-13-45T00:00:00Z")  # well formed, no such day
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]


def test_prices_are_non_negative_decimals(spec: dict[str, Any], api: Any, admin_user: Any) -> None:
    pattern = component(spec, "PatchedPricesRequest")["properties"]["cpu_hour"]["pattern"]
    for value, ok in [("0.5", True), ("12", True), ("", False), ("-1", False), ("1.1234567", False)]:
        assert bool(re.fullmatch(pattern, value)) is ok
        r = api(admin_user).patch("/api/v1/prices/", {"cpu_hour": value}, format="json")
        assert r.status_code == (200 if ok else 400), (value, r.json())
