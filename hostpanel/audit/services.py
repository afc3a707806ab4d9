"""Recording changes in the audit log.

Services wrap each change in :func:`audited`: the entry is written after the
change's transaction, with result ``ok``, ``denied`` (403/404/quota) or ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models

from hostpanel.audit.models import AuditLog
from hostpanel.errors import Forbidden, NotFound, QuotaExceeded, ServiceError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


@dataclass
class Actor:
    """Who acts: a user (None for the system), through which token, from which address."""

    user: AbstractBaseUser | AnonymousUser | None
    token: models.Model | None = None  # a tenants.ApiToken (audit sits below tenants)
    source_address: str | None = None

    @property
    def is_admin(self) -> bool:
        """Staff acting through a session. A token is for one tenant and never carries admin powers."""
        return bool(self.user is not None and getattr(self.user, "is_staff", False) and self.token is None)

    @property
    def name(self) -> str:
        if self.user is None:
            return "system"
        return str(getattr(self.user, "username", "")) or "anonymous"


SYSTEM = Actor(user=None)


@dataclass
class AuditEntry:
    """What an :func:`audited` block fills in as it learns the object."""

    tenant: models.Model | None
    obj: models.Model | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def record(
    actor: Actor,
    action: str,
    *,
    tenant: models.Model | None,
    obj: models.Model | None = None,
    result: str = AuditLog.Result.OK,
    message: str = "",
) -> AuditLog:
    """Write one audit entry."""
    user = actor.user if actor.user is not None and getattr(actor.user, "pk", None) else None
    return AuditLog.objects.create(
        actor=user,
        actor_name=actor.name,
        token=actor.token,
        tenant=tenant if tenant is not None and tenant.pk else None,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        source_address=actor.source_address,
        result=result,
        message=message[:2000],
    )


@contextmanager
def audited(
    actor: Actor, action: str, tenant: models.Model | None, obj: models.Model | None = None
) -> Iterator[AuditEntry]:
    """Record ``action`` once the block ends: ok, or denied/failed with the error's message.

    Put the transaction *inside* the block so a refused change is still logged.
    """
    entry = AuditEntry(tenant=tenant, obj=obj)
    try:
        yield entry
    except (Forbidden, NotFound, QuotaExceeded) as exc:
        record(
            actor, action, tenant=entry.tenant, obj=entry.obj, result=AuditLog.Result.DENIED, message=str(exc)
        )
        raise
    except ServiceError as exc:
        record(
            actor, action, tenant=entry.tenant, obj=entry.obj, result=AuditLog.Result.FAILED, message=str(exc)
        )
        raise
    record(actor, action, tenant=entry.tenant, obj=entry.obj)
