"""Uploaded images count against the tenant's one storage quota, with its containers' files on hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.tenants.models import Quota, Role, Tenant
from hostpanel.tenants.storage import storage_use
from hostpanel.usage.storage import record_tenant_storage
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def upload(api: Any, user: Any, tenant: Tenant, name: str, data: bytes) -> Any:
    return api(user).post(
        f"/api/v1/tenants/{tenant.slug}/images/",
        {"name": name, "archive": SimpleUploadedFile("app.tar", data)},
        format="multipart",
    )


def test_an_upload_over_the_storage_quota_is_refused_and_nothing_is_stored(
    api: Any, tenant: Tenant, host: Host, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    Quota.objects.filter(tenant=tenant).update(disk_bytes=10_000)
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    assert upload(api, dev, tenant, "one:1", b"a" * 4000).status_code == 201
    # the tenant's containers wrote 5000 bytes into their root file systems on a host
    record_tenant_storage(host, tenant, rootfs_bytes=5000, build_cache_bytes=0)
    r = upload(api, dev, tenant, "two:1", b"b" * 2000)
    assert r.status_code == 422, r.json()
    error = r.json()["error"]
    assert "over its storage quota" in error["message"] and "stores 8.8 KiB of 9.8 KiB" in error["message"]
    assert error["details"]["storage"]["rootfs"] == 5000
    assert not Image.objects.filter(reference="acme/two:1").exists()
    assert sorted(p.name for p in (tmp_path / "images" / tenant.slug).iterdir()) == [
        Path(Image.objects.get(reference="acme/one:1").archive).name
    ]
    assert storage_use(tenant).total == 9000
