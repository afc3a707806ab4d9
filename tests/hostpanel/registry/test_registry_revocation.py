"""A registry bearer token ends with its holder's access: removal, demotion, revocation, disabling.

The bearer token is signed and short-lived, but expiry alone would leave a removed
member pulling for minutes: every request re-checks the member's role and the API
token behind it, so access ends with the very next request after the change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.services import Actor
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant
from tests.hostpanel.factories import MembershipFactory, UserFactory
from tests.hostpanel.registry.conftest import Registry, basic, error_code

pytestmark = pytest.mark.django_db
Reg = Callable[..., Registry]
PASSWORD = "s3cret-enough-pw"


@pytest.fixture
def owner(acme: Tenant) -> Actor:
    return Actor(user=MembershipFactory(tenant=acme, role=Role.OWNER).user)


def _bearer(reg: Reg, authorization: str, scope: str = "repository:acme/app:pull,push") -> Registry:
    r = reg(authorization=authorization).request("GET", f"/v2/token?scope={scope}")
    assert r.status_code == 200, r.content
    return reg(authorization=f"Bearer {r.json()['token']}")


@pytest.mark.parametrize("credential", ["password", "api-token"])
def test_a_removed_members_bearer_token_stops_at_the_next_request(
    reg: Reg, acme: Tenant, owner: Actor, token_for: Any, credential: str
) -> None:
    user = UserFactory(username="leaver", password=PASSWORD)
    membership = Membership.objects.create(user=user, tenant=acme, role=Role.DEVELOPER)
    login = basic("leaver", PASSWORD) if credential == "password" else basic("x", token_for(acme, user=user))
    bearer = _bearer(reg, login)
    bearer.push_image("acme/app", "1")
    assert bearer.request("GET", "/v2/acme/app/tags/list").status_code == 200

    tenants.remove_member(owner, membership)

    r = bearer.request("GET", "/v2/acme/app/tags/list")
    assert r.status_code in (401, 404), r.content
    assert bearer.request("GET", "/v2/acme/app/manifests/1").status_code in (401, 404)


def test_a_demoted_members_bearer_token_loses_push_at_once(reg: Reg, acme: Tenant, owner: Actor) -> None:
    user = UserFactory(username="demoted", password=PASSWORD)
    membership = Membership.objects.create(user=user, tenant=acme, role=Role.DEVELOPER)
    bearer = _bearer(reg, basic("demoted", PASSWORD))
    bearer.push_image("acme/app", "1")

    tenants.change_role(owner, membership, Role.VIEWER)

    assert bearer.request("GET", "/v2/acme/app/tags/list").status_code == 200  # viewers still pull
    r = bearer.request("POST", "/v2/acme/app/blobs/uploads/")
    assert r.status_code in (401, 403), r.content
    assert error_code(r) in ("DENIED", "UNAUTHORIZED")


def test_a_revoked_api_tokens_bearer_token_and_a_disabled_users_stop(
    reg: Reg, acme: Tenant, token_for: Any
) -> None:
    user = UserFactory(username="dev", password=PASSWORD)
    Membership.objects.create(user=user, tenant=acme, role=Role.DEVELOPER)
    via_token = _bearer(reg, basic("x", token_for(acme, user=user)))
    via_password = _bearer(reg, basic("dev", PASSWORD))
    via_token.push_image("acme/app", "1")

    token = ApiToken.objects.get(user=user)
    tenants.revoke_token(Actor(user=user), token)
    assert via_token.request("GET", "/v2/acme/app/tags/list").status_code == 401
    assert via_password.request("GET", "/v2/acme/app/tags/list").status_code == 200

    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert via_password.request("GET", "/v2/acme/app/tags/list").status_code == 401
