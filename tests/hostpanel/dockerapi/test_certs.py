"""Client certificates: the CA, issue, revoke, list, and how a peer certificate maps to an identity."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.dockerapi import ca
from hostpanel.dockerapi.certs import (
    Refused,
    certificate_of_peer,
    issue_certificate,
    revoke_certificate,
    visible_certificates,
)
from hostpanel.dockerapi.identity import effective_role
from hostpanel.dockerapi.models import ClientCertificate
from hostpanel.errors import Forbidden, NotFound
from hostpanel.tenants.models import Membership, Role
from tests.hostpanel.factories import MembershipFactory, TenantFactory, UserFactory


@pytest.fixture(autouse=True)
def ca_dir(settings: Any, tmp_path: Path) -> Path:
    settings.HOSTPANEL_DOCKER_API_DIR = tmp_path / "dockerapi"
    return tmp_path / "dockerapi"


def der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_the_ca_is_made_once_with_private_files(tmp_path: Path) -> None:
    first = ca.load_or_create(tmp_path / "ca")
    again = ca.load_or_create(tmp_path / "ca")
    assert first.cert == again.cert
    for name in (ca.CA_KEY, ca.CA_CERT):
        assert stat.S_IMODE((tmp_path / "ca" / name).stat().st_mode) == 0o600
    assert first.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_client_certificate_carries_user_tenant_and_role(tmp_path: Path) -> None:
    authority = ca.load_or_create(tmp_path / "ca")
    issued = ca.issue_client(authority, username="ann", tenant="acme", role="viewer", days=30)
    assert ca.subject_fields(issued.cert) == {"user": "ann", "tenant": "acme", "role": "viewer"}
    assert issued.cert.issuer == authority.cert.subject
    public_key = authority.cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    algorithm = issued.cert.signature_hash_algorithm
    assert algorithm is not None
    public_key.verify(issued.cert.signature, issued.cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    assert "PRIVATE KEY" in issued.key_pem


@pytest.mark.django_db
def test_a_member_issues_one_for_themself_with_their_role_audited(ca_dir: Path) -> None:
    membership = MembershipFactory(role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    issued = issue_certificate(actor, membership.tenant, "laptop")
    row = issued.certificate
    assert (row.user, row.tenant, row.role) == (membership.user, membership.tenant, Role.DEVELOPER)
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert ca.subject_fields(cert) == {
        "user": membership.user.username,
        "tenant": membership.tenant.slug,
        "role": "developer",
    }
    assert row.serial == ca.serial_text(cert) and row.fingerprint == ca.fingerprint(cert)
    assert "PRIVATE KEY" in issued.key_pem
    stored = " ".join(str(v) for v in ClientCertificate.objects.values().get().values())
    assert "PRIVATE KEY" not in stored and issued.key_pem.splitlines()[1] not in stored
    assert issued.ca_pem == ca.load_or_create(ca_dir).cert_pem
    assert "docker context create" in issued.context_command() and "cert=" in issued.context_command()
    entry = AuditLog.objects.get(action="docker_certificate.issue")
    assert entry.result == "ok" and entry.tenant == membership.tenant


@pytest.mark.django_db
def test_an_outsider_cannot_issue_one() -> None:
    tenant = TenantFactory(slug="acme")
    outsider = UserFactory(username="eve")
    with pytest.raises(NotFound):
        issue_certificate(Actor(user=outsider), tenant, "laptop")
    assert not ClientCertificate.objects.exists()


@pytest.mark.django_db
def test_revoke_by_the_holder_or_an_owner_only() -> None:
    tenant = TenantFactory(slug="acme")
    holder = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    colleague = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    first = issue_certificate(Actor(user=holder), tenant, "laptop").certificate
    second = issue_certificate(Actor(user=holder), tenant, "ci").certificate
    # a colleague does not even see it
    assert list(visible_certificates(Actor(user=colleague), tenant)) == []
    with pytest.raises(NotFound):
        revoke_certificate(Actor(user=colleague), tenant, first.pk)
    assert set(visible_certificates(Actor(user=owner), tenant)) == {first, second}
    revoke_certificate(Actor(user=holder), tenant, first.pk)
    revoke_certificate(Actor(user=owner), tenant, second.pk)
    assert all(c.revoked_at is not None for c in ClientCertificate.objects.all())
    assert AuditLog.objects.filter(action="docker_certificate.revoke", result="ok").count() == 2


@pytest.mark.django_db
def test_the_peer_certificate_maps_to_its_row_and_refusals_say_what_to_do(tmp_path: Path) -> None:
    membership = MembershipFactory(role=Role.DEVELOPER)
    issued = issue_certificate(Actor(user=membership.user), membership.tenant, "laptop")
    assert certificate_of_peer(der(issued.cert_pem)) == issued.certificate

    with pytest.raises(Refused, match="no client certificate"):
        certificate_of_peer(None)
    # the same subject, signed by another CA: unknown here
    other = ca.load_or_create(tmp_path / "other")
    forged = ca.issue_client(
        other, username=membership.user.username, tenant=membership.tenant.slug, role="owner", days=1
    )
    with pytest.raises(Refused, match="not issued by this panel"):
        certificate_of_peer(der(forged.cert_pem))

    ClientCertificate.objects.filter(pk=issued.certificate.pk).update(
        not_after=timezone.now() - datetime.timedelta(seconds=1)
    )
    with pytest.raises(Refused, match="expired"):
        certificate_of_peer(der(issued.cert_pem))

    ClientCertificate.objects.filter(pk=issued.certificate.pk).update(revoked_at=timezone.now())
    with pytest.raises(Refused, match=r"revoked.*issue a new one"):
        certificate_of_peer(der(issued.cert_pem))


@pytest.mark.django_db
def test_the_role_is_the_lower_of_the_certificates_and_todays() -> None:
    membership = MembershipFactory(role=Role.OWNER)
    actor, tenant = Actor(user=membership.user), membership.tenant
    assert effective_role(actor, tenant, Role.DEVELOPER) == Role.DEVELOPER  # promoted since: not more
    Membership.objects.filter(pk=membership.pk).update(role=Role.VIEWER)
    assert effective_role(actor, tenant, Role.DEVELOPER) == Role.VIEWER  # demoted since: less
    Membership.objects.filter(pk=membership.pk).delete()
    assert effective_role(actor, tenant, Role.DEVELOPER) is None  # left the tenant: nothing


@pytest.mark.django_db
def test_a_session_without_a_user_cannot_issue() -> None:
    tenant = TenantFactory(slug="acme")
    with pytest.raises((Forbidden, NotFound)):
        issue_certificate(Actor(user=None), tenant, "x")
