"""Client certificates for the Docker API: issue (for yourself, in one tenant), revoke, list.

A member issues a certificate for themself in one tenant; it carries their role at that
moment. The private key is returned once and never stored. The holder, or an owner of the
tenant, revokes it. Every change is audited.
"""

from __future__ import annotations

import datetime
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from hostpanel.audit.services import Actor, audited
from hostpanel.dockerapi import ca
from hostpanel.dockerapi.models import ClientCertificate
from hostpanel.errors import Forbidden, InvalidRequest, NotFound
from hostpanel.tenants.access import has_role, require_role
from hostpanel.tenants.models import Role, Tenant


def authority() -> ca.Authority:
    """The installation's CA (made under ``HOSTPANEL_DOCKER_API_DIR`` the first time)."""
    return ca.load_or_create(Path(settings.HOSTPANEL_DOCKER_API_DIR))


def api_host() -> str:
    """The address clients reach the door at (``HOSTPANEL_DOCKER_API_HOST``, else the bind address)."""
    import socket

    if settings.HOSTPANEL_DOCKER_API_HOST:
        return str(settings.HOSTPANEL_DOCKER_API_HOST)
    bind = str(settings.HOSTPANEL_DOCKER_API_BIND)
    return socket.getfqdn() if bind in ("", "0.0.0.0", "::") else bind


def endpoint() -> str:
    """``tcp://<host>:<port>`` of the door."""
    host = api_host()
    host = f"[{host}]" if ":" in host else host
    return f"tcp://{host}:{settings.HOSTPANEL_DOCKER_API_PORT}"


@dataclass(frozen=True)
class IssuedCertificate:
    """A new certificate: its row, and the three PEM blocks the client needs (the key shown once)."""

    certificate: ClientCertificate
    ca_pem: str
    cert_pem: str
    key_pem: str

    @property
    def context_name(self) -> str:
        return f"hostpanel-{self.certificate.tenant.slug}"

    def context_command(self, directory: str = "$HOME/.docker/hostpanel") -> str:
        """The ``docker context create`` command for the files saved in ``directory``."""
        d = f"{directory}/{self.certificate.tenant.slug}"
        return (
            f'docker context create {self.context_name} --docker "host={endpoint()},'
            f'ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem"'
        )

    def zip_bytes(self) -> bytes:
        """ca.pem, cert.pem and key.pem in a zip, as the dashboard offers them for download."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in (
                ("ca.pem", self.ca_pem),
                ("cert.pem", self.cert_pem),
                ("key.pem", self.key_pem),
            ):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o600 if name == "key.pem" else 0o644) << 16
                archive.writestr(info, text)
        return buffer.getvalue()


def issue_certificate(actor: Actor, tenant: Tenant, name: str) -> IssuedCertificate:
    """A certificate for the actor themself in ``tenant``, carrying their role there now."""
    role = require_role(actor, tenant, Role.VIEWER)
    user = actor.user
    if user is None or not getattr(user, "pk", None):
        raise Forbidden("sign in as a member to issue a Docker API certificate for yourself")
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest(
            "name: say what the certificate is for (a laptop, a CI runner), 1-100 characters"
        )
    with audited(actor, "docker_certificate.issue", tenant) as entry:
        issued = ca.issue_client(
            authority(),
            username=str(getattr(user, "username", "")),
            tenant=tenant.slug,
            role=role,
            days=settings.HOSTPANEL_DOCKER_API_CERT_DAYS,
        )
        certificate = ClientCertificate.objects.create(
            user=user,
            tenant=tenant,
            name=name,
            role=role,
            serial=issued.serial,
            fingerprint=issued.fingerprint,
            not_after=issued.cert.not_valid_after_utc,
        )
        entry.obj = certificate
    return IssuedCertificate(certificate, authority().cert_pem, issued.cert_pem, issued.key_pem)


def visible_certificates(actor: Actor, tenant: Tenant) -> QuerySet[ClientCertificate]:
    """An owner sees every certificate of the tenant; another member only their own."""
    require_role(actor, tenant, Role.VIEWER)
    rows = ClientCertificate.objects.filter(tenant=tenant).select_related("user", "tenant")
    if has_role(actor, tenant, Role.OWNER):
        return rows
    user_id = getattr(actor.user, "pk", None)
    return rows.filter(user_id=user_id)


def revoke_certificate(actor: Actor, tenant: Tenant, certificate_id: int) -> ClientCertificate:
    """Revoke a certificate (its holder or an owner of the tenant); refused from the next request on."""
    certificate = visible_certificates(actor, tenant).filter(pk=certificate_id).first()
    if certificate is None:
        raise NotFound(f"no Docker API certificate {certificate_id} in tenant {tenant.slug!r}")
    with audited(actor, "docker_certificate.revoke", tenant, certificate):
        if certificate.revoked_at is None:
            certificate.revoked_at = timezone.now()
            certificate.save(update_fields=["revoked_at"])
    return certificate


class Refused(Exception):
    """A client certificate the door does not accept; the message says why and what to do."""


def certificate_of_peer(der: bytes | None) -> ClientCertificate:
    """The issued, active certificate a TLS peer showed (its serial and fingerprint both match)."""
    if not der:
        raise Refused("no client certificate: issue one on the tenant's Docker API page of the panel")
    cert = x509.load_der_x509_certificate(der)
    row = (
        ClientCertificate.objects.filter(serial=ca.serial_text(cert), fingerprint=ca.fingerprint(cert))
        .select_related("user", "tenant")
        .first()
    )
    if row is None:
        raise Refused(
            "this certificate was not issued by this panel: issue one on the tenant's Docker API page"
        )
    if row.revoked_at is not None:
        raise Refused(
            f"certificate {row.name!r} was revoked at {row.revoked_at:%Y-%m-%d %H:%M} UTC:"
            " issue a new one on the tenant's Docker API page"
        )
    if row.not_after <= timezone.now():
        raise Refused(f"certificate {row.name!r} expired at {row.not_after:%Y-%m-%d}: issue a new one")
    if not getattr(row.user, "is_active", False):
        raise Refused(f"the user {row.user} is disabled")
    if row.last_used_at is None or timezone.now() - row.last_used_at > datetime.timedelta(minutes=1):
        ClientCertificate.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row
