"""Who may watch which log stream: one authorizer per kind of stream.

A kind is the first part of a log group (``logs.<kind>.<key>``). ``container``
is registered here; other apps register theirs at import time, e.g. in their
``AppConfig.ready``::

    from hostpanel.logstream import access
    access.register("build", lambda user, key: may_see_build(user, key))

An authorizer takes the connecting user (maybe anonymous) and the key from the
URL (``ws/logs/<kind>/<key>/``) and returns whether that user may read the
stream. It runs in a worker thread, so it may use the ORM. It must answer False
(never raise) for unknown keys and for other tenants' objects, so a viewer
learns nothing about what exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hostpanel.audit.services import Actor
from hostpanel.deployments.models import Replica
from hostpanel.tenants.access import has_role, still_valid
from hostpanel.tenants.models import Role

Authorizer = Callable[[Any, str], bool]

_authorizers: dict[str, Authorizer] = {}
KIND = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def register(kind: str, authorizer: Authorizer) -> None:
    """Make ``authorizer(user, key) -> bool`` decide who may watch streams of ``kind``."""
    if not KIND.match(kind):
        raise ValueError(f"invalid log kind {kind!r}: use lowercase letters, digits and _")
    _authorizers[kind] = authorizer


def may_watch(user: Any, kind: str, key: str) -> bool:
    """Whether ``user`` may read stream ``kind``/``key`` (False for unknown kinds)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    authorizer = _authorizers.get(kind)
    return bool(authorizer is not None and authorizer(user, key))


def may_keep_watching(user: Any, kind: str, key: str) -> bool:
    """Whether an open stream of ``user`` may go on, now: the user re-read (still active) and
    the stream's authorizer asked again (so a removed or demoted member stops watching)."""

    fresh = still_valid(Actor(user=user))
    return fresh is not None and may_watch(fresh.user, kind, key)


def container_viewer(user: Any, key: str) -> bool:
    """A replica's log: viewer role or above in its tenant (admins everywhere)."""

    if not key.isdigit():
        return False
    replica = Replica.objects.filter(pk=int(key)).select_related("app__tenant").first()
    if replica is None:
        return False
    return has_role(Actor(user=user), replica.app.tenant, Role.VIEWER)


register("container", container_viewer)
