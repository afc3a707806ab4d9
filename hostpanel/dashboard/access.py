"""Who is acting and in which tenant: the one place the dashboard scopes by tenant.

Every tenant page resolves its tenant through :func:`tenant_context`, which
calls the tenants service (another tenant, or none: 404; a lower role: 403),
and looks objects up only inside that tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import resolve_url

from hostpanel.audit.services import Actor
from hostpanel.deployments.models import App, Replica
from hostpanel.errors import Forbidden, NotFound, ServiceError
from hostpanel.tenants.access import actor_of, at_least, get_tenant, require_role, role_of, visible_tenants
from hostpanel.tenants.models import Role, Tenant


@dataclass(frozen=True)
class TenantContext:
    """The tenant of a page and what the actor may do in it."""

    actor: Actor
    tenant: Tenant
    role: str

    def at_least(self, role: str) -> bool:
        return at_least(self.role, role)

    @property
    def can_act(self) -> bool:
        """Developers and owners change apps; viewers only look."""
        return self.at_least(Role.DEVELOPER)

    @property
    def is_owner(self) -> bool:
        return self.at_least(Role.OWNER)

    def template_context(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "role": self.role, "can_act": self.can_act, "is_owner": self.is_owner}


def tenant_context(request: HttpRequest, slug: str, role: str = Role.VIEWER) -> TenantContext:
    """The page's tenant for the signed-in user; NotFound/Forbidden from the service otherwise."""
    actor = actor_of(request)
    tenant = get_tenant(actor, slug, role)
    have = role_of(actor, tenant)
    assert have is not None  # get_tenant refused outsiders
    return TenantContext(actor, tenant, have)


def tenant_app(ctx: TenantContext, name: str) -> App:
    """An app of the page's tenant (another tenant's: 404)."""
    app = App.objects.filter(tenant=ctx.tenant, name=name).select_related("current_release").first()
    if app is None:
        raise Http404(f"no app {name!r} in tenant {ctx.tenant.slug!r}")
    return app


def tenant_replica(ctx: TenantContext, replica_id: int) -> Replica:
    """A container (replica) of the page's tenant (another tenant's: 404)."""
    replica = (
        Replica.objects.filter(pk=replica_id, app__tenant=ctx.tenant).select_related("app", "host").first()
    )
    if replica is None:
        raise Http404(f"no container {replica_id} in tenant {ctx.tenant.slug!r}")
    return replica


def switchable_tenants(request: HttpRequest) -> list[Tenant]:
    """The tenants the signed-in user may switch to (admins: all)."""
    if not request.user.is_authenticated:
        return []
    return list(visible_tenants(actor_of(request)).order_by("slug"))


def page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A dashboard view: signed in (else the login page); the services' NotFound is a 404 and
    Forbidden a 403, so views stay a few lines."""

    @wraps(view)
    def signed_in(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(str(exc)) from exc
        except Forbidden as exc:
            raise PermissionDenied(str(exc)) from exc

    guarded = login_required(signed_in)

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.headers.get("HX-Request") and not request.user.is_authenticated:
            # a live part polled after the session ended: send the whole page to the login form
            page_url = request.headers.get("HX-Current-URL") or "/"
            response = HttpResponse(status=204)
            response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page_url})}"
            return response
        return guarded(request, *args, **kwargs)

    return wrapper


def require_developer(ctx: TenantContext) -> None:
    """Viewers see but cannot act: a change they POST is a 403 (the tenants service decides)."""
    require_role(ctx.actor, ctx.tenant, Role.DEVELOPER)


def run_action(request: HttpRequest, action: Callable[[], str]) -> None:
    """Run a page's POST action (a call into a service that returns what it did, in words).

    What it did becomes the page's success message; a service's refusal becomes its
    error message. Another tenant's object (404) and a missing role (403) stay errors.
    """
    try:
        done = action()
    except (NotFound, Forbidden):
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
