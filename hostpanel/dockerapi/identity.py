"""Who calls the door: the certificate's member, tenant and role, checked on every request.

The tenant is the certificate's; the role is the lower of the certificate's and the member's
role now (a demoted member's old certificate does not keep the old powers; one who left the
tenant is refused). The role rule itself is ``hostpanel.tenants.access``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models

from engine.dockerapi.http import APIError, Request
from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor, record
from hostpanel.dockerapi.certs import Refused, certificate_of_peer
from hostpanel.dockerapi.models import ClientCertificate
from hostpanel.tenants.access import at_least, may_still, role_of
from hostpanel.tenants.models import Tenant
from hostpanel.tenants.services import authenticate_token


@dataclass(frozen=True)
class Identity:
    """A request's member (as an audit :class:`Actor`), tenant and effective role."""

    actor: Actor
    tenant: Tenant
    role: str
    via: str  # "certificate 'laptop'": named in refusals
    certificate_id: int | None = None

    def require(self, role: str, what: str, action: str, obj: models.Model | None = None) -> None:
        """403 naming the role ``what`` needs, unless this identity holds at least ``role``; the
        refusal is in the audit log as ``action`` (denied)."""
        if not at_least(self.role, role):
            message = (
                f"{what} needs the {role} role in tenant {self.tenant.slug!r}; your {self.via} carries"
                f" {self.role}: ask an owner of the tenant for the role, then issue a new certificate"
            )
            self.denied(action, message, obj)
            raise APIError(403, message)

    def still_valid(self) -> bool:
        """Whether this identity may go on now (long answers: ``logs -f``): its certificate still
        active, its user still a member with at least the role it started with."""
        if self.certificate_id is not None:
            certificate = ClientCertificate.objects.filter(pk=self.certificate_id).first()
            if certificate is None or not certificate.is_active:
                return False
        return may_still(self.actor, self.tenant.pk, self.role)

    def denied(self, action: str, message: str, obj: models.Model | None = None) -> None:
        """Record a refused write in the audit log."""
        record(
            self.actor, action, tenant=self.tenant, obj=obj, result=AuditLog.Result.DENIED, message=message
        )


def _peer_address(request: Request) -> str | None:
    try:
        address = request.connection.getpeername()
    except OSError:
        return None
    return str(address[0]) if isinstance(address, tuple) else None


def effective_role(actor: Actor, tenant: Tenant, certified: str) -> str | None:
    """The lower of the certificate's role and the actor's role in ``tenant`` now (None: none now)."""
    now = role_of(actor, tenant)
    if now is None:
        return None
    return certified if at_least(now, certified) else now


def authenticate(request: Request) -> Identity:
    """The identity of a request: its TLS peer certificate, or (when the operator allows it,
    ``HOSTPANEL_DOCKER_API_TOKENS``) a panel API token in ``Authorization: Token <secret>``;
    401 saying what to do otherwise."""
    getpeercert: Any = getattr(request.connection, "getpeercert", None)
    der = getpeercert(binary_form=True) if getpeercert is not None else None
    header = request.headers.get("Authorization") or ""
    if not der and header and settings.HOSTPANEL_DOCKER_API_TOKENS:
        return _token_identity(request, header)
    try:
        certificate = certificate_of_peer(der)
    except Refused as exc:
        raise APIError(401, str(exc)) from None
    actor = Actor(user=certificate.user, source_address=_peer_address(request))
    role = effective_role(actor, certificate.tenant, certificate.role)
    if role is None:
        raise APIError(
            401,
            f"{certificate.user} is no longer a member of tenant {certificate.tenant.slug!r}:"
            " ask an owner to add you again, then issue a new certificate",
        )
    return Identity(actor, certificate.tenant, role, f"certificate {certificate.name!r}", certificate.pk)


def _token_identity(request: Request, header: str) -> Identity:
    """A panel API token (made for one tenant) as the identity: the token's user, its role now."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "token":
        raise APIError(401, "give 'Authorization: Token <secret>' (a panel API token) in HttpHeaders")
    token = authenticate_token(parts[1])
    if token is None:
        raise APIError(401, "invalid, expired or revoked API token: make a new one in the panel")
    actor = Actor(user=token.user, token=token, source_address=_peer_address(request))
    role = role_of(actor, token.tenant)
    if role is None:
        raise APIError(401, f"{token.user} is no longer a member of tenant {token.tenant.slug!r}")
    return Identity(actor, token.tenant, role, f"API token {token.name!r}")
