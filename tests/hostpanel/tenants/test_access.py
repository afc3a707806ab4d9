"""The one access rule (hostpanel/tenants/access.py): roles, admins, tokens, and re-checks."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils import timezone

from hostpanel.audit.services import Actor
from hostpanel.errors import Forbidden, NotFound
from hostpanel.tenants import access
from hostpanel.tenants.models import Membership, Role, Tenant
from hostpanel.tenants.services import create_token, revoke_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme() -> Tenant:
    return TenantFactory(slug="acme")


@pytest.fixture
def globex() -> Tenant:
    return TenantFactory(slug="globex")


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.DEVELOPER, False),
        (Role.DEVELOPER, Role.DEVELOPER, True),
        (Role.DEVELOPER, Role.OWNER, False),
        (Role.OWNER, Role.VIEWER, True),
        (None, Role.VIEWER, False),
    ],
)
def test_at_least_orders_viewer_developer_owner(have: str | None, need: str, ok: bool) -> None:
    assert access.at_least(have, need) is ok


def test_members_act_by_role_outsiders_get_not_found(acme: Tenant, globex: Tenant) -> None:
    viewer = Actor(user=MembershipFactory(tenant=acme, role=Role.VIEWER).user)
    assert access.has_role(viewer, acme, Role.VIEWER)
    assert not access.has_role(viewer, acme, Role.DEVELOPER)
    assert access.require_role(viewer, acme, Role.VIEWER) == Role.VIEWER
    with pytest.raises(Forbidden, match="needs the developer role"):
        access.require_role(viewer, acme, Role.DEVELOPER)
    with pytest.raises(NotFound, match="no tenant 'globex'"):
        access.require_role(viewer, globex, Role.VIEWER)
    with pytest.raises(NotFound):
        access.get_tenant(viewer, "globex")
    with pytest.raises(NotFound):
        access.get_tenant(viewer, "nonexistent")
    assert list(access.visible_tenants(viewer)) == [acme]


def test_anonymous_has_no_role(acme: Tenant) -> None:
    anon = Actor(user=AnonymousUser())
    assert access.role_of(anon, acme) is None
    assert not access.visible_tenants(anon).exists()
    assert access.role_of(Actor(user=None), acme) is None


def test_admins_are_owners_everywhere_but_not_through_a_token(acme: Tenant) -> None:
    staff = UserFactory(username="ops", is_staff=True)
    assert access.role_of(Actor(user=staff), acme) == Role.OWNER
    access.require_admin(Actor(user=staff))
    token, _ = create_token(Actor(user=staff), acme, "t")
    with pytest.raises(Forbidden, match="only administrators"):
        access.require_admin(Actor(user=staff, token=token))


def test_a_token_confines_its_user_to_its_tenant(acme: Tenant, globex: Tenant) -> None:
    user = MembershipFactory(tenant=acme, role=Role.OWNER).user
    Membership.objects.create(user=user, tenant=globex, role=Role.OWNER)
    token, _ = create_token(Actor(user=user), acme, "t")
    via_token = Actor(user=user, token=token)
    assert access.has_role(via_token, acme, Role.OWNER)
    assert access.role_of(via_token, globex) is None
    assert list(access.visible_tenants(via_token)) == [acme]


def test_actor_of_a_request_and_of_a_websocket_scope(settings: Any, acme: Tenant) -> None:
    settings.HOSTPANEL_TRUSTED_PROXIES = ["10.0.0.1"]
    user = UserFactory()
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5, 10.0.0.1")
    request.user = user
    actor = access.actor_of(request)
    assert (actor.user, actor.token, actor.source_address) == (user, None, "203.0.113.5")
    token, _ = create_token(Actor(user=MembershipFactory(tenant=acme, user=user).user), acme, "t")
    drf_like = SimpleNamespace(user=user, auth=token, META={"REMOTE_ADDR": "198.51.100.1"})
    assert access.actor_of(drf_like).token == token
    scope = {"user": user, "client": ["10.0.0.1", 1234], "headers": [(b"x-forwarded-for", b"192.0.2.7")]}
    ws = access.actor_of(scope)
    assert (ws.user, ws.token, ws.source_address) == (user, None, "192.0.2.7")
    assert access.scope_source_address({"client": ["not-an-ip", 1]}) is None


def test_may_still_follows_removal_demotion_deactivation_and_revocation(acme: Tenant) -> None:
    membership = MembershipFactory(tenant=acme, role=Role.DEVELOPER)
    user = membership.user
    actor = Actor(user=user)
    assert access.may_still(actor, acme.pk, Role.DEVELOPER)

    membership.role = Role.VIEWER
    membership.save()
    assert not access.may_still(actor, acme.pk, Role.DEVELOPER)
    assert access.may_still(actor, acme.pk, Role.VIEWER)

    token, _ = create_token(actor, acme, "t")
    via_token = Actor(user=user, token=token)
    assert access.may_still(via_token, acme.pk, Role.VIEWER)
    revoke_token(actor, token)
    assert token.revoked_at is not None
    assert not access.may_still(
        Actor(user=user, token=type(token).objects.get(pk=token.pk)), acme.pk, Role.VIEWER
    )
    stale = Actor(user=user, token=token)
    token.revoked_at = None  # the in-memory copy a long-lived session holds still looks valid
    assert not access.may_still(stale, acme.pk, Role.VIEWER)

    expiring, _ = create_token(actor, acme, "e", expires_at=timezone.now() + timedelta(hours=1))
    type(expiring).objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert not access.may_still(Actor(user=user, token=expiring), acme.pk, Role.VIEWER)

    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert not access.may_still(actor, acme.pk, Role.VIEWER)  # the stale user object says active

    type(user).objects.filter(pk=user.pk).update(is_active=True)
    membership.delete()
    assert not access.may_still(actor, acme.pk, Role.VIEWER)
    assert not access.may_still(actor, 999999, Role.VIEWER)
