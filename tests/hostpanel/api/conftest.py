"""Fixtures of the API tests."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from hostpanel.audit.services import Actor
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory


@pytest.fixture
def owner_token(db: None, host: Host) -> tuple[Tenant, APIClient]:
    """Tenant acme and a client authenticated with its owner's API token (named "automation")."""
    tenant = TenantFactory(slug="acme")
    user = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _, secret = create_token(Actor(user=user), tenant, "automation")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return tenant, client
