"""Health check bounds through the API: timeout <= interval <= 300 s, retries 1-10, else a 400 saying so."""

from __future__ import annotations

from typing import Any

import pytest

from hostpanel.deployments.models import App, Release
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db

WEB = {"name": "web", "image": "busybox:latest", "command": ["sleep", "3600"]}
HTTP = {"http": {"port": 8080, "path": "/healthz"}}


@pytest.fixture
def dev(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


@pytest.mark.parametrize(
    ("check", "words"),
    [
        (
            HTTP | {"interval": 10, "timeout": 11},
            "health_check.timeout: give seconds, more than 0 and at most the interval (10 s)",
        ),
        (HTTP | {"timeout": 31}, "at most the interval (30 s)"),  # the default interval
        (HTTP | {"interval": 301}, "health_check.interval: give seconds, more than 0 and at most 300"),
        (HTTP | {"interval": 3600, "timeout": 5}, "health_check.interval"),
        (HTTP | {"interval": 0}, "health_check.interval"),
        (HTTP | {"interval": -5}, "health_check.interval"),
        (HTTP | {"timeout": 0}, "health_check.timeout"),
        (HTTP | {"timeout": -1}, "health_check.timeout"),
        (HTTP | {"retries": 0}, "health_check.retries: give a whole number from 1 to 10"),
        (HTTP | {"retries": -3}, "health_check.retries"),
        (HTTP | {"retries": 11}, "health_check.retries"),
        (HTTP | {"retries": 2.5}, "health_check.retries"),
        (HTTP | {"interval": True}, "health_check.interval"),
        (HTTP | {"interval": "10"}, "health_check.interval"),
        ({"http": {"port": 0}}, "health_check.http"),
        ({"http": {"port": 80, "path": "/x HTTP/1.1\r\nHost: evil"}}, "health_check.http.path"),
        ({"http": {"port": 80, "path": "http://127.0.0.1:8000/"}}, "health_check.http.path"),
        ({"tcp": {"port": 70000}}, "health_check.tcp"),
        ({"command": []}, "health_check.command"),
        ({"tcp": {"port": 80}, "http": {"port": 80}}, "exactly one of"),
        ({"interval": 10}, "exactly one of"),
    ],
)
def test_out_of_bounds_checks_are_a_400_naming_the_field_and_range(
    api: Any, dev: Any, tenant: Tenant, host: Host, check: dict[str, Any], words: str
) -> None:
    client = api(dev)
    r = client.post(f"/api/v1/tenants/{tenant.slug}/apps/", WEB | {"health_check": check}, format="json")
    assert r.status_code == 400, r.json()
    assert words in r.json()["error"]["message"]
    assert not App.objects.exists()  # changed nothing
    # the same rule on update
    assert client.post(f"/api/v1/tenants/{tenant.slug}/apps/", WEB, format="json").status_code == 201
    r = client.patch(f"/api/v1/tenants/{tenant.slug}/apps/web/", {"health_check": check}, format="json")
    assert r.status_code == 400 and words in r.json()["error"]["message"]
    assert Release.objects.count() == 1


@pytest.mark.parametrize(
    "check",
    [
        HTTP | {"interval": 300, "timeout": 300, "retries": 10},
        HTTP | {"interval": 2},  # the default timeout (5 s) shrinks to the interval
        {"tcp": {"port": 5432}, "interval": 0.5, "timeout": 0.25, "retries": 1},
        {"command": ["test", "-f", "/ready"]},
    ],
)
def test_checks_within_bounds_are_accepted(
    api: Any, dev: Any, tenant: Tenant, host: Host, check: dict[str, Any]
) -> None:
    r = api(dev).post(f"/api/v1/tenants/{tenant.slug}/apps/", WEB | {"health_check": check}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["release"]["health_check"] == check


def test_the_openapi_schema_documents_the_bounds(api: Any, admin_user: Any) -> None:
    r = api(admin_user).get("/api/schema/?format=json")
    assert r.status_code == 200
    schemas = r.json()["components"]["schemas"]
    check = schemas["AppCreateRequest"]["properties"]["health_check"]
    assert "0 < timeout <= interval <= 300 seconds, 1 <= retries <= 10" in check["description"]
    assert "never follows redirects" in check["description"]
    http = next(s for s in check["oneOf"] if "http" in s["required"])
    assert http["properties"]["interval"]["maximum"] == 300
    assert http["properties"]["timeout"]["exclusiveMinimum"] is True
    assert http["properties"]["retries"] == {"type": "integer", "minimum": 1, "maximum": 10}
