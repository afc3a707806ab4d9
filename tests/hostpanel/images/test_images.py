"""Images: base images for all, uploads for their tenant only, imported by the host that needs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.images import services
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def uploads_in_tmp(settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path


def upload(api: Any, user: Any, tenant: Tenant, name: str = "app:1") -> Any:
    archive = SimpleUploadedFile("app.tar", b"archive bytes")
    return api(user).post(
        f"/api/v1/tenants/{tenant.slug}/images/", {"name": name, "archive": archive}, format="multipart"
    )


def test_upload_is_named_in_the_tenant_namespace_and_stored(api: Any, tenant: Tenant, host: Host) -> None:
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    r = upload(api, dev, tenant)
    assert r.status_code == 201, r.json()
    assert r.json()["reference"] == "acme/app:1" and r.json()["base"] is False
    image = Image.objects.get(reference="acme/app:1")
    assert Path(image.archive).read_bytes() == b"archive bytes"
    refs = [i["reference"] for i in api(dev).get(f"/api/v1/tenants/{tenant.slug}/images/").json()["results"]]
    assert refs == ["acme/app:1", "busybox:latest"]


def test_a_tenant_cannot_run_another_tenants_image(api: Any, tenant: Tenant, host: Host) -> None:
    other = TenantFactory(slug="other")
    Image.objects.create(tenant=other, reference="other/secret-app:latest")
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    body = {"name": "web", "image": "other/secret-app"}
    r = api(dev).post(f"/api/v1/tenants/{tenant.slug}/apps/", body, format="json")
    assert r.status_code == 400
    assert "not available to tenant 'acme'" in r.json()["error"]["message"]
    body["image"] = "nginx:1.25"  # not a base image either
    assert api(dev).post(f"/api/v1/tenants/{tenant.slug}/apps/", body, format="json").status_code == 400


def test_image_references_are_normalized(api: Any, tenant: Tenant, host: Host) -> None:
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    r = api(dev).post(
        f"/api/v1/tenants/{tenant.slug}/apps/", {"name": "web", "image": "busybox"}, format="json"
    )
    assert r.status_code == 201 and r.json()["release"]["image"] == "busybox:latest"


def test_upload_cannot_take_a_base_image_name(api: Any, tenant: Tenant, admin_actor: Any) -> None:
    services.add_base_image(admin_actor, "tools:1")
    with pytest.raises(Exception, match="tenant's namespace"):
        services.add_base_image(admin_actor, "acme/tools:1")


def test_base_images_are_registered_by_admins_and_agents(api: Any, admin_user: Any, tenant: Tenant) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    assert api(owner).post("/api/v1/images/", {"reference": "alpine:3"}, format="json").status_code == 403
    assert (
        api(admin_user).post("/api/v1/images/", {"reference": "alpine:3"}, format="json").status_code == 201
    )
    made = services.register_base_images(["busybox:latest", "acme/app:1", "debian:12"])
    assert sorted(i.reference for i in made) == ["busybox:latest", "debian:12"]  # never a tenant's namespace


def test_the_host_imports_an_uploaded_image_on_first_use(
    api: Any, tenant: Tenant, host: Host, agents: EnrolledAgents
) -> None:
    """The enrolled agent (no database) fetches the upload from the panel's internal API, imports it
    under exactly its reference as the tenant's, and removes its download after."""
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    upload(api, dev, tenant)
    r = api(dev).post(
        f"/api/v1/tenants/{tenant.slug}/apps/", {"name": "web", "image": "acme/app:1"}, format="json"
    )
    assert r.status_code == 201, r.json()
    engine = FakeEngine()
    report = agents.reconcile(engine, host)
    assert report.failed == [] and [ref for _, ref in engine.images.imported] == ["acme/app:1"]
    assert engine.images.contents["acme/app:1"] == b"archive bytes"
    assert list((agents.state_dir(host) / "scratch").iterdir()) == []  # the download is gone
    assert ("GET", "images/archive?reference=acme%2Fapp%3A1") in [c[:2] for c in agents.client(host).calls]
    assert Replica.objects.get().state == Replica.State.RUNNING
    agents.reconcile(engine, host)
    assert len(engine.images.imported) == 1  # held now: imported once
    assert (
        api(dev)
        .delete(f"/api/v1/tenants/{tenant.slug}/images/{Image.objects.get(tenant=tenant).pk}/")
        .status_code
        == 409
    )


def test_archives_are_deleted_with_their_image_and_tenant(
    api: Any, tenant: Tenant, host: Host, admin_user: Any, tmp_path: Path
) -> None:
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    upload(api, dev, tenant, "a:1")
    first = Path(Image.objects.get(reference="acme/a:1").archive)
    archive = SimpleUploadedFile("app.tar", b"other bytes")
    api(dev).post(
        f"/api/v1/tenants/{tenant.slug}/images/", {"name": "a:1", "archive": archive}, format="multipart"
    )
    assert not first.exists() and Path(Image.objects.get(reference="acme/a:1").archive).exists()
    upload(api, dev, tenant, "b:1")
    b = Image.objects.get(reference="acme/b:1")
    assert api(dev).delete(f"/api/v1/tenants/{tenant.slug}/images/{b.pk}/").status_code == 204
    assert not Path(b.archive).exists()
    assert api(admin_user).delete(f"/api/v1/tenants/{tenant.slug}/").status_code == 204
    assert not (tmp_path / "images" / "acme").exists()
