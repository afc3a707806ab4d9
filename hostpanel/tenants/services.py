"""Business rules of hostpanel.tenants: tenants, members and roles, API tokens, quotas.

Plain, typed functions that take the acting :class:`Actor` (DESIGN.md). Who may
do what is decided in :mod:`hostpanel.tenants.access`, the one access rule.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from engine.runtime.model import DEFAULT_TENANT
from hostpanel.audit.services import Actor, audited
from hostpanel.errors import Conflict, Forbidden, InvalidRequest, QuotaExceeded
from hostpanel.tenants import signals, units
from hostpanel.tenants.access import has_role, require_admin, require_role
from hostpanel.tenants.models import ApiToken, Membership, Quota, Role, Tenant

TOKEN_PREFIX = "hp_"


# ---- tenants ------------------------------------------------------------------------
# Engine names no tenant may take: the operator's own tenant and the base image namespace.
RESERVED_SLUGS = frozenset({DEFAULT_TENANT, "library"})


def create_tenant(
    actor: Actor, slug: str, name: str = "", owner: AbstractBaseUser | str | None = None
) -> Tenant:
    """Create a tenant with the default quota (admins only), optionally with its first owner
    (a user or a username)."""
    require_admin(actor)
    if slug in RESERVED_SLUGS:
        raise InvalidRequest(
            f"the slug {slug!r} is reserved (the engine's operator tenant and the registry's base "
            "namespace use it); choose another"
        )
    if isinstance(owner, str):
        found = get_user_model().objects.filter(username=owner).first()
        if found is None:
            raise InvalidRequest(f"no user {owner!r}; an administrator creates users first")
        owner = found
    with audited(actor, "tenant.create", None) as entry, transaction.atomic():
        if Tenant.objects.filter(slug=slug).exists():
            raise Conflict(f"tenant {slug!r} exists already")
        signals.tenant_creating.send(sender=Tenant, slug=slug)  # refused while hosts still purge it
        tenant = Tenant.objects.create(slug=slug, name=name)
        Quota.objects.create(tenant=tenant, **settings.HOSTPANEL_DEFAULT_QUOTA)
        if owner is not None:
            Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
        entry.tenant, entry.obj = tenant, tenant
    return tenant


def update_tenant(actor: Actor, tenant: Tenant, name: str) -> Tenant:
    require_role(actor, tenant, Role.OWNER)
    with audited(actor, "tenant.update", tenant, tenant):
        tenant.name = name
        tenant.save(update_fields=["name"])
    return tenant


def delete_tenant(actor: Actor, tenant: Tenant) -> None:
    """Delete a tenant with everything it owns (admins only; the API, the admin site and
    `manage.py delete_tenant` all come here).

    Every host's agent then purges what its engine holds of the tenant (containers, images,
    build cache, volumes, networks, cgroups, uid range); until all have, the slug cannot be
    taken again, so a new tenant of that name starts empty.
    """
    require_admin(actor)
    slug = tenant.slug
    with audited(actor, "tenant.delete", None, tenant), transaction.atomic():
        signals.tenant_deleting.send(sender=Tenant, actor=actor, tenant=tenant)  # its apps go first
        tenant.delete()
        signals.tenant_deleted.send(sender=Tenant, slug=slug)  # every host purges it
    signals.tenant_gone.send(sender=Tenant, tenant=tenant, slug=slug)  # uploaded archives, contexts


# ---- members ------------------------------------------------------------------------
def add_member(actor: Actor, tenant: Tenant, username: str, role: str) -> Membership:
    """Give an existing user a role in the tenant (owners)."""
    require_role(actor, tenant, Role.OWNER)
    user = get_user_model().objects.filter(username=username).first()
    with audited(actor, "member.add", tenant) as entry, transaction.atomic():
        if user is None:
            raise InvalidRequest(f"no user {username!r}; an administrator creates users")
        try:
            membership = Membership.objects.create(user=user, tenant=tenant, role=Role(role))
        except IntegrityError as exc:
            raise Conflict(f"{username!r} is a member of {tenant.slug!r} already") from exc
        entry.obj = membership
    return membership


def change_role(actor: Actor, membership: Membership, role: str) -> Membership:
    tenant = membership.tenant
    require_role(actor, tenant, Role.OWNER)
    with audited(actor, "member.update", tenant, membership), transaction.atomic():
        if membership.role == Role.OWNER and role != Role.OWNER:
            _keep_an_owner(tenant, membership)
        membership.role = Role(role)
        membership.save(update_fields=["role"])
    return membership


def remove_member(actor: Actor, membership: Membership) -> None:
    tenant = membership.tenant
    require_role(actor, tenant, Role.OWNER)
    with audited(actor, "member.remove", tenant, membership), transaction.atomic():
        if membership.role == Role.OWNER:
            _keep_an_owner(tenant, membership)
        membership.delete()


def _keep_an_owner(tenant: Tenant, leaving: Membership) -> None:
    if not Membership.objects.filter(tenant=tenant, role=Role.OWNER).exclude(pk=leaving.pk).exists():
        raise Conflict(f"{leaving.user} is the last owner of {tenant.slug!r}; make someone else owner first")


# ---- tokens -------------------------------------------------------------------------
def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    actor: Actor, tenant: Tenant, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Make a token for the acting user in ``tenant``; returns it with its secret (shown once)."""
    require_role(actor, tenant, Role.VIEWER)
    user = actor.user
    if user is None or not getattr(user, "is_authenticated", False):
        raise Forbidden("only a signed-in user can make a token")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at is in the past")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with audited(actor, "token.create", tenant) as entry:
        token = ApiToken.objects.create(
            user=user,
            tenant=tenant,
            name=name,
            prefix=secret[: len(TOKEN_PREFIX) + 6],
            digest=hash_token(secret),
            expires_at=expires_at,
        )
        entry.obj = token
    return token, secret


def visible_tokens(actor: Actor, tenant: Tenant) -> QuerySet[ApiToken]:
    """Owners see every token of the tenant, others their own."""
    qs = ApiToken.objects.filter(tenant=tenant)
    if has_role(actor, tenant, Role.OWNER):
        return qs
    return qs.filter(user_id=getattr(actor.user, "pk", None))


def revoke_token(actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token: its owner or a tenant owner may."""
    tenant = token.tenant
    if token.user_id != getattr(actor.user, "pk", None):
        require_role(actor, tenant, Role.OWNER)
    with audited(actor, "token.revoke", tenant, token):
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
    return token


def authenticate_token(secret: str) -> ApiToken | None:
    """The active token with this secret (its last-use time updated), or None.

    One query reads the token, its user, its tenant and the user's role in that tenant
    (``token.member_role``, None when no longer a member), which :func:`role_of` then
    uses for this request instead of asking again. Nothing is cached here (the REST API's
    TokenCache in hostpanel/api/auth.py reuses the answer for a stated bound).
    """
    member_role = Membership.objects.filter(user=OuterRef("user_id"), tenant=OuterRef("tenant_id")).order_by()
    token = (
        ApiToken.objects.select_related("user", "tenant")
        .annotate(member_role=Subquery(member_role.values("role")[:1]))
        .filter(digest=hash_token(secret))  # unique
        .order_by()
        .first()
    )
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# ---- quotas -------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """Resources a tenant's apps ask for (what the quota limits)."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    pids: int = 0
    containers: int = 0
    volumes: int = 0
    disk_bytes: int = 0


_UNITS = {"cpu_millis": "millicores", "memory_bytes": "bytes", "disk_bytes": "bytes"}


def check_quota(tenant: Tenant, before: Usage, after: Usage) -> None:
    """QuotaExceeded listing each resource that ``after`` takes over the quota and by how much.

    Only resources that grow are checked, so a tenant over its quota (after an
    admin lowered it) can still scale down or stop.
    """
    quota = Quota.objects.get(tenant=tenant)
    over = []
    for resource, wanted in asdict(after).items():
        limit = getattr(quota, resource)
        if wanted > limit and wanted > getattr(before, resource):
            had = getattr(before, resource)
            over.append(
                {
                    "resource": resource,
                    "limit": limit,
                    "requested": wanted,
                    "over_by": wanted - limit,
                    "unit": _UNITS.get(resource, "count"),
                    # in words: what the change adds, and what the quota has left for it
                    "asked": wanted - had,
                    "left": max(limit - had, 0),
                    "text": units.over_text(resource, wanted - had, max(limit - had, 0)),
                }
            )
    if over:
        text = "; ".join(o["text"] for o in over)
        raise QuotaExceeded(f"over the quota of tenant {tenant.slug!r}: {text}", {"over": over})


def update_quota(actor: Actor, tenant: Tenant, **values: int | list[str]) -> Quota:
    """Set quota values (admins). The hosts are told so running containers follow at once.

    ``egress_allow`` is a list of CIDR ranges the tenant's containers may reach
    besides the internet; the rest are counts and sizes.
    """
    require_admin(actor)
    with audited(actor, "quota.update", tenant) as entry, transaction.atomic():
        quota = Quota.objects.select_for_update().get(tenant=tenant)
        for key, value in values.items():
            if not hasattr(quota, key) or key in ("id", "tenant", "tenant_id", "updated_at"):
                raise InvalidRequest(f"unknown quota field {key!r}")
            setattr(quota, key, value if key == "egress_allow" else int(value))
        try:
            quota.clean()
        except ValidationError as exc:
            raise InvalidRequest(
                "; ".join(f"{k}: {m}" for k, ms in exc.message_dict.items() for m in ms)
            ) from None
        quota.save()
        entry.obj = quota
        signals.quota_changed.send(sender=Tenant, tenant=tenant)  # the hosts are told
    return quota


def is_anonymous(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return user is None or not getattr(user, "is_authenticated", False)
