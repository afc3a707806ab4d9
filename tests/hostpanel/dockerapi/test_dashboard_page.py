"""The tenant's Docker API page: issue (zip or PEM blocks, the key once), list, revoke."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from hostpanel.dockerapi.models import ClientCertificate
from hostpanel.tenants.models import Role
from tests.hostpanel.factories import MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ca_dir(settings: Any, tmp_path: Path) -> None:
    settings.HOSTPANEL_DOCKER_API_DIR = tmp_path / "dockerapi"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_issue_as_a_zip_and_the_page_shows_the_context_command() -> None:
    membership = MembershipFactory(tenant=TenantFactory(slug="acme"), role=Role.DEVELOPER)
    client = signed_in(membership.user)
    page = client.get("/t/acme/docker/")
    assert page.status_code == 200
    assert b"docker context create hostpanel-acme --docker" in page.content
    assert b"docker --context hostpanel-acme ps" in page.content
    r = client.post("/t/acme/docker/issue/", {"name": "laptop", "format": "zip"})
    assert (
        r.status_code == 200 and r["Content-Type"] == "application/zip" and r["Cache-Control"] == "no-store"
    )
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert sorted(names) == ["ca.pem", "cert.pem", "key.pem"]
    row = ClientCertificate.objects.get()
    assert (row.user, row.role, row.name) == (membership.user, "developer", "laptop")
    assert b"laptop" in client.get("/t/acme/docker/").content


def test_issue_showing_the_pem_blocks_once() -> None:
    membership = MembershipFactory(tenant=TenantFactory(slug="acme"), role=Role.VIEWER)
    client = signed_in(membership.user)
    r = client.post("/t/acme/docker/issue/", {"name": "ci", "format": "pem"})
    assert r.status_code == 200 and b"BEGIN PRIVATE KEY" in r.content and b"BEGIN CERTIFICATE" in r.content
    assert b"BEGIN PRIVATE KEY" not in client.get("/t/acme/docker/").content  # shown once
    assert ClientCertificate.objects.get().role == "viewer"


def test_revoke_by_the_holder_and_not_by_another_tenant() -> None:
    acme, bolt = TenantFactory(slug="acme"), TenantFactory(slug="bolt")
    holder = MembershipFactory(tenant=acme, role=Role.DEVELOPER).user
    signed_in(holder).post("/t/acme/docker/issue/", {"name": "laptop", "format": "zip"})
    row = ClientCertificate.objects.get()
    outsider = signed_in(MembershipFactory(tenant=bolt, role=Role.OWNER).user)
    assert outsider.get("/t/acme/docker/").status_code == 404
    assert outsider.post(f"/t/acme/docker/{row.pk}/revoke/").status_code == 404
    assert outsider.post(f"/t/bolt/docker/{row.pk}/revoke/").status_code == 404  # not in bolt
    row.refresh_from_db()
    assert row.revoked_at is None
    r = signed_in(holder).post(f"/t/acme/docker/{row.pk}/revoke/")
    assert r.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_a_name_is_required() -> None:
    membership = MembershipFactory(tenant=TenantFactory(slug="acme"), role=Role.DEVELOPER)
    r = signed_in(membership.user).post("/t/acme/docker/issue/", {"name": " ", "format": "zip"})
    assert r.status_code == 400 and b"say what the certificate is for" in r.content
    assert not ClientCertificate.objects.exists()
