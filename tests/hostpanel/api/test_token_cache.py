"""The API's token cache: a token is read once per HOSTPANEL_TOKEN_CACHE_SECONDS per process,
and a revocation, a disabled user or a role change takes effect within that bound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from hostpanel.api import auth
from hostpanel.audit.services import Actor
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant
from hostpanel.tenants.services import create_token

BOUND = 2.0


@pytest.fixture
def clock(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The cache on (BOUND seconds) with a clock the test moves: ``clock[0] += 3``."""
    settings.HOSTPANEL_TOKEN_CACHE_SECONDS = BOUND
    now = [1000.0]
    monkeypatch.setattr(auth, "clock", lambda: now[0])
    auth.token_cache.clear()
    yield now
    auth.token_cache.clear()


def _token_queries(client: APIClient, url: str) -> tuple[int, int]:
    """The status of a GET and how many of its queries read API tokens."""
    with CaptureQueriesContext(connection) as captured:
        status = client.get(url).status_code
    return status, sum('FROM "tenants_apitoken"' in q["sql"] for q in captured.captured_queries)


def test_a_token_is_read_once_per_bound(clock: list[float], owner_token: tuple[Tenant, APIClient]) -> None:
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/secrets/"
    assert _token_queries(client, url) == (200, 1)
    assert _token_queries(client, url) == (200, 0)
    clock[0] += BOUND + 0.1
    assert _token_queries(client, url) == (200, 1)


def test_revocation_takes_effect_within_the_bound(
    clock: list[float], owner_token: tuple[Tenant, APIClient]
) -> None:
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/secrets/"
    assert client.get(url).status_code == 200
    ApiToken.objects.filter(tenant=tenant).update(revoked_at=timezone.now())  # another worker's revoke
    clock[0] += BOUND - 0.1
    assert client.get(url).status_code == 200  # this process still holds it: the stated bound
    clock[0] += 0.2
    assert client.get(url).status_code == 401
    assert client.get(url).status_code == 401  # and a refusal is never cached as a success


def test_role_change_and_disabled_user_within_the_bound(
    clock: list[float], owner_token: tuple[Tenant, APIClient]
) -> None:
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/secrets/"
    assert client.post(url, {"name": "a", "value": "v"}, format="json").status_code == 201
    membership = Membership.objects.get(tenant=tenant)
    Membership.objects.filter(pk=membership.pk).update(role=Role.VIEWER)
    clock[0] += BOUND + 0.1
    assert client.post(url, {"name": "b", "value": "v"}, format="json").status_code == 403
    type(membership.user).objects.filter(pk=membership.user_id).update(is_active=False)
    clock[0] += BOUND + 0.1
    assert client.get(url).status_code == 401


def test_an_expired_token_is_refused_at_once(
    clock: list[float], owner_token: tuple[Tenant, APIClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/secrets/"
    expires = timezone.now() + timedelta(hours=1)
    ApiToken.objects.filter(tenant=tenant).update(expires_at=expires)
    assert client.get(url).status_code == 200  # cached with its expiry
    later = SimpleNamespace(now=lambda: expires + timedelta(seconds=1))
    monkeypatch.setattr("hostpanel.tenants.models.timezone", later)  # ApiToken.is_active's clock
    assert client.get(url).status_code == 401  # still cached, but expired: refused without asking


def test_every_request_gets_its_own_token(clock: list[float], owner_token: tuple[Tenant, APIClient]) -> None:
    """Threads of a worker share the cache: what one request changes on its user or token
    never reaches another request."""
    tenant, _ = owner_token
    user = ApiToken.objects.get(tenant=tenant).user
    _, secret = create_token(Actor(user=user), tenant, "second")
    first = auth.token_cache.authenticate(secret)
    assert first is not None
    first.user.username = "changed-by-a-request"
    first.tenant.name = "changed too"
    first.name = "changed"
    first.member_role = Role.VIEWER  # type: ignore[attr-defined]
    first._state.fields_cache.pop("user")
    second = auth.token_cache.authenticate(secret)
    assert second is not None and second is not first
    assert second.user is not first.user and second.tenant is not first.tenant
    assert second.user.username == user.username and second.name == "second"
    assert second.tenant.name == tenant.name
    assert second.member_role == Role.OWNER  # type: ignore[attr-defined]
    with CaptureQueriesContext(connection) as captured:  # its user and tenant came with it
        assert (second.user.pk, second.tenant.slug) == (user.pk, tenant.slug)
    assert not captured.captured_queries


def test_a_copy_is_the_token_as_read(clock: list[float], owner_token: tuple[Tenant, APIClient]) -> None:
    """own_copy keeps every field of the token, its user and tenant, and their state."""
    tenant, _ = owner_token
    token = ApiToken.objects.select_related("user", "tenant").get(tenant=tenant)
    copied = auth.own_copy(token)
    for original, copy in [(token, copied), (token.user, copied.user), (token.tenant, copied.tenant)]:
        assert copy is not original and original.__dict__.keys() <= copy.__dict__.keys()
        assert all(copy.__dict__[k] == v for k, v in original.__dict__.items() if k != "_state")
        assert copy._state is not original._state and copy._state.db == original._state.db
        assert copy._state.adding == original._state.adding
