"""The panel's one access rule: who acts, and what their role lets them do in a tenant.

Every door (the REST API, the dashboard, log streams, the terminal, the
registry, builds) asks here, so a change to the rule is made in one place:

- :func:`actor_of` turns a request (Django or DRF) or a WebSocket scope into an
  :class:`~hostpanel.audit.services.Actor`: the user, the API token it came
  through and the client's address.
- Admins (staff acting through a session) are owners everywhere. A member acts
  in its tenant by role (viewer < developer < owner). A token confines its user
  to the token's tenant and never carries admin powers.
- :func:`require_role` answers NotFound to outsiders (never a hint that the
  tenant exists) and Forbidden to a member whose role is too low;
  :func:`has_role` is the same rule as a yes/no.
- :func:`still_valid` re-reads the actor's user and token, so long-lived
  sessions (terminals, log streams, registry bearer tokens) end when the user
  is disabled, the token revoked or expired, as well as when the role goes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from hostpanel.audit.services import Actor
from hostpanel.errors import Forbidden, NotFound
from hostpanel.tenants.models import ROLE_RANK, ApiToken, Membership, Role, Tenant


# ---- who acts ---------------------------------------------------------------------------
def source_address(request: Any) -> str | None:
    """The client's address: REMOTE_ADDR, or, when that is a trusted proxy, the last
    address in X-Forwarded-For that is not one (``HOSTPANEL_TRUSTED_PROXIES``)."""
    return _address_from(request.META)


def _address_from(meta: Mapping[str, Any]) -> str | None:
    remote = meta.get("REMOTE_ADDR") or None
    trusted = set(settings.HOSTPANEL_TRUSTED_PROXIES)
    if remote not in trusted:
        return remote
    hops = [h.strip() for h in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote
    return remote


def scope_source_address(scope: Mapping[str, Any]) -> str | None:
    """The client's address from an ASGI scope, through trusted proxies like HTTP requests."""
    client = scope.get("client") or [None]
    headers = dict(scope.get("headers") or [])
    meta = {
        "REMOTE_ADDR": client[0],
        "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", b"").decode("latin-1"),
    }
    address = _address_from(meta)
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        return None


def actor_of(request_or_scope: Any) -> Actor:
    """The acting user, token and source address of a request (Django or DRF) or ASGI scope."""
    if isinstance(request_or_scope, Mapping):  # a WebSocket's scope: a session, never a token
        return Actor(user=request_or_scope.get("user"), source_address=scope_source_address(request_or_scope))
    auth = getattr(request_or_scope, "auth", None)
    token = auth if isinstance(auth, ApiToken) else None
    return Actor(user=request_or_scope.user, token=token, source_address=source_address(request_or_scope))


# ---- the role rule ----------------------------------------------------------------------
def at_least(have: str | None, role: str) -> bool:
    """Whether role ``have`` (None: no role) is ``role`` or above."""
    return have is not None and ROLE_RANK[Role(have)] >= ROLE_RANK[Role(role)]


def role_of(actor: Actor, tenant: Tenant) -> str | None:
    """The actor's role in ``tenant`` (admins are owners everywhere), or None."""
    if actor.token is not None and actor.token.tenant_id != tenant.pk:
        return None
    if actor.is_admin:
        return Role.OWNER
    user = actor.user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if actor.token is not None and hasattr(actor.token, "member_role"):
        # read with the token itself when this request was authenticated (authenticate_token)
        return actor.token.member_role  # type: ignore[no-any-return]
    membership = Membership.objects.filter(user=user, tenant=tenant).only("role").first()
    return membership.role if membership else None


def has_role(actor: Actor, tenant: Tenant, role: str) -> bool:
    """Whether the actor holds at least ``role`` in ``tenant``."""
    return at_least(role_of(actor, tenant), role)


def require_role(actor: Actor, tenant: Tenant, role: str) -> str:
    """The actor's role if it is at least ``role``; NotFound for outsiders, Forbidden for lower roles."""
    have = role_of(actor, tenant)
    if have is None:
        raise NotFound(f"no tenant {tenant.slug!r}")
    if not at_least(have, role):
        raise Forbidden(f"this needs the {role} role in tenant {tenant.slug!r}; you are {have}")
    return have


def require_admin(actor: Actor) -> None:
    """Forbidden unless the actor is an admin (staff, through a session)."""
    if not actor.is_admin:
        raise Forbidden("only administrators may do this")


def visible_tenants(actor: Actor) -> QuerySet[Tenant]:
    """The tenants the actor may see."""
    if actor.token is not None:
        return Tenant.objects.filter(pk=actor.token.tenant_id)
    if actor.is_admin:
        return Tenant.objects.all()
    if actor.user is None or not getattr(actor.user, "is_authenticated", False):
        return Tenant.objects.none()
    return Tenant.objects.filter(memberships__user=actor.user)


def get_tenant(actor: Actor, slug: str, role: str = Role.VIEWER) -> Tenant:
    """A tenant the actor holds at least ``role`` in (NotFound / Forbidden otherwise)."""
    token = actor.token
    if token is not None and ApiToken.tenant.is_cached(token) and token.tenant.slug == slug:
        tenant = token.tenant  # read with the token (a token is for one tenant)
    else:
        tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    require_role(actor, tenant, role)
    return tenant


# ---- long-lived access ------------------------------------------------------------------
def still_valid(actor: Actor) -> Actor | None:
    """The actor re-read from the database, or None when its user is gone or disabled or its
    token revoked or expired. Long-lived doors call this before each re-check of the role."""
    user = actor.user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    fresh_user = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    if fresh_user is None:
        return None
    token = None
    if actor.token is not None:
        token = ApiToken.objects.filter(pk=actor.token.pk, user=fresh_user).select_related("tenant").first()
        if token is None or not token.is_active:
            return None
    return Actor(user=fresh_user, token=token, source_address=actor.source_address)


def may_still(actor: Actor, tenant_id: int, role: str) -> bool:
    """Whether a session opened by ``actor`` in tenant ``tenant_id`` with ``role`` may go on, now."""
    fresh = still_valid(actor)
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    return fresh is not None and tenant is not None and has_role(fresh, tenant, role)
