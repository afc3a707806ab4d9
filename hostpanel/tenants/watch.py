"""Access that ends within seconds: open WebSockets re-check themselves.

A terminal or a log stream is authorized when it opens, but may stay open for
hours. So that removing a member, lowering its role, disabling its user or
revoking its token ends what it has open:

- every change to a membership, an API token or a user sends
  ``{"type": "access.changed"}`` to the Channels group ``access.user.<id>``
  (after the transaction commits), and
- an :class:`AccessGuard` on each open consumer joins that group, re-checks at
  once on such a message and, as a backstop for changes that send none (a
  lost message, a bulk update), every ``HOSTPANEL_ACCESS_RECHECK_SECONDS``
  (default 2 s); when the check fails it calls the consumer's ``access_lost()``.

Consumers route the message with ``async def access_changed(self, event)``
calling :meth:`AccessGuard.recheck`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from hostpanel.tenants.models import ApiToken, Membership

log = logging.getLogger(__name__)
CHANGED = {"type": "access.changed"}
DEFAULT_RECHECK_SECONDS = 2.0


def user_group(user_id: int) -> str:
    """The Channels group of a user's open sessions."""
    return f"access.user.{int(user_id)}"


def recheck_seconds() -> float:
    """How often an open session re-checks its access without being told of a change."""
    return float(getattr(settings, "HOSTPANEL_ACCESS_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS))


def notify_user(user_id: int | None) -> None:
    """Tell the user's open sessions to re-check their access once the transaction commits."""
    if user_id is None:
        return

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(user_group(user_id), CHANGED)
        except Exception as exc:  # the periodic re-check still ends the session in seconds
            log.warning("could not tell user %s's open sessions of an access change: %s", user_id, exc)

    transaction.on_commit(send)


@receiver([post_save, post_delete], sender=Membership)
@receiver([post_save, post_delete], sender=ApiToken)
def _membership_or_token_changed(sender: Any, instance: Membership | ApiToken, **_: Any) -> None:
    notify_user(instance.user_id)


USER_ACCESS_FIELDS = frozenset({"is_active", "is_staff"})


def _user_changed(sender: Any, instance: Any, update_fields: Any = None, **_: Any) -> None:
    if update_fields and not USER_ACCESS_FIELDS & set(update_fields):
        return  # e.g. last_login on each login: nothing about access changed
    notify_user(instance.pk)


def connect_user_signals() -> None:
    """Connect the user model's signals (called from the app's ready(), once models load)."""
    user_model = get_user_model()
    post_save.connect(_user_changed, sender=user_model, dispatch_uid="hostpanel.access.user_saved")
    post_delete.connect(_user_changed, sender=user_model, dispatch_uid="hostpanel.access.user_deleted")


class AccessGuard:
    """Keeps re-checking an open consumer's access; calls ``on_lost`` once when it ends."""

    def __init__(
        self, consumer: Any, check: Callable[[], bool], on_lost: Callable[[], Awaitable[None]]
    ) -> None:
        self.consumer = consumer
        self.check = check
        self.on_lost = on_lost
        self.group: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self.lock = asyncio.Lock()

    async def start(self, user_id: int | None) -> None:
        """Join the user's group and start the periodic re-check."""
        if user_id is not None:
            self.group = user_group(user_id)
            await self.consumer.channel_layer.group_add(self.group, self.consumer.channel_name)
        self.task = asyncio.create_task(self._every())

    async def stop(self) -> None:
        """Leave the group and stop re-checking (from the consumer's disconnect)."""
        if self.task is not None:
            self.task.cancel()
        if self.group is not None:
            with contextlib.suppress(Exception):
                await self.consumer.channel_layer.group_discard(self.group, self.consumer.channel_name)
            self.group = None

    async def recheck(self) -> None:
        """Check now; on refusal call ``on_lost`` (once)."""
        async with self.lock:
            if self.lost:
                return
            allowed = await database_sync_to_async(self.check)()
            if allowed:
                return
            self.lost = True
        await self.on_lost()

    async def _every(self) -> None:
        while not self.lost:
            await asyncio.sleep(recheck_seconds())
            try:
                await self.recheck()
            except Exception as exc:  # a failing check (database away) must not end the loop quietly
                log.warning("access re-check failed: %s", exc)
