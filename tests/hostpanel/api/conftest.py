"""Fixtures of the API tests."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from hostpanel.api import answer_cache
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


@pytest.fixture
def cache_on(settings: Any) -> None:
    """Kept answers on (30 s), none kept yet."""
    settings.HOSTPANEL_API_CACHE_SECONDS = 30
    answer_cache.answers.clear()
