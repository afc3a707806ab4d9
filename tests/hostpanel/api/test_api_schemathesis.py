"""schemathesis against the panel's own OpenAPI schema (/api/schema/), as a tenant's API token:
generated requests to every operation, in-process through Django's WSGI app. No answer may be a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient

from hostpanel.audit.services import Actor
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import Role
from tests.hostpanel.factories import MembershipFactory, UserFactory

SLUG = "fuzz"


@pytest.fixture(autouse=True)
def keep_the_test_database_open() -> Any:
    """Calling the WSGI app directly fires request_started/finished, whose handler would close the
    test's database connection (Django's test client unhooks it the same way)."""
    signals = (request_started, request_finished)
    for signal in signals:
        signal.disconnect(close_old_connections)
    yield
    for signal in signals:
        signal.connect(close_old_connections)


@pytest.fixture
def token(db: None, host: Any) -> str:
    """An owner's API token of tenant ``fuzz`` (a token never carries admin powers)."""
    admin = UserFactory(username="fuzz-admin", is_staff=True)
    tenant = tenants.create_tenant(Actor(user=admin), SLUG)
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _token, secret = tenants.create_token(Actor(user=owner), tenant, "fuzz")
    return secret


# Loaded once at collection, from the panel itself (the schema view needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_answers_with_a_server_error(case: Any, token: str) -> None:
    for name in ("slug", "tenant_slug"):
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = SLUG
    case.headers = {**(case.headers or {}), "Authorization": f"Token {token}"}
    case.cookies = {}
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code}\n{response.text[:2000]}"
    )


def test_options_answers_on_every_operation_path(token: str, admin_user: Any) -> None:
    """OPTIONS (DRF's metadata) on each path of the schema, as the tenant's token and as an admin:
    never a 5xx (it was a 500 on /quota/, whose URL has no id)."""
    paths = [op.ok().path for op in schema.get_all_operations()]
    token_client, admin_client = APIClient(), APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    admin_client.force_authenticate(admin_user)
    for path in sorted(set(paths)):
        url = path.replace("{tenant_slug}", SLUG).replace("{slug}", SLUG)
        url = url.replace("{id}", "1").replace("{name}", "web")
        for client in (token_client, admin_client):
            response = client.options(url)
            assert response.status_code < 500, f"OPTIONS {url}: {response.status_code}"
    quota = admin_client.options(f"/api/v1/tenants/{SLUG}/quota/")
    assert quota.status_code == 200 and "PUT" in quota.json()["actions"]
