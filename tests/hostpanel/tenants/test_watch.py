"""What tells open sessions to re-check: membership, token and user changes (not a login)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from hostpanel.audit.services import Actor
from hostpanel.tenants import watch
from hostpanel.tenants.models import Membership, Role, Tenant
from hostpanel.tenants.services import create_token, revoke_token
from tests.hostpanel.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def _notices(user_id: int, change: Callable[[], None], on_commit: Callable[[], Any]) -> int:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(watch.user_group(user_id), channel)
    with on_commit():
        change()

    async def drain() -> int:
        count = 0
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.2)
            except TimeoutError:
                return count
            assert message == watch.CHANGED
            count += 1

    return async_to_sync(drain)()


def test_membership_token_and_user_changes_notify_the_users_sessions(
    tenant: Tenant, on_commit: Callable[[], Any]
) -> None:
    user = UserFactory()
    membership = Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
    token, _ = create_token(Actor(user=user), tenant, "t")

    def demote() -> None:
        membership.role = Role.VIEWER
        membership.save()

    def disable() -> None:
        user.is_active = False
        user.save(update_fields=["is_active"])

    assert _notices(user.pk, demote, on_commit) == 1
    assert _notices(user.pk, lambda: revoke_token(Actor(user=user), token), on_commit) == 1
    assert _notices(user.pk, disable, on_commit) == 1
    assert _notices(user.pk, membership.delete, on_commit) == 1


def test_a_login_does_not_notify(on_commit: Callable[[], Any]) -> None:
    user = UserFactory()

    def login() -> None:
        user.last_login = timezone.now()
        user.save(update_fields=["last_login"])

    assert _notices(user.pk, login, on_commit) == 0
