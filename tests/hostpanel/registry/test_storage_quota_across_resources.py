"""The one storage quota (tenants.storage) holds across volumes, images and registry pushes: what
one resource stores leaves less room for the others, each asked through tenants.signals.stored_bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hostpanel.audit.services import Actor
from hostpanel.errors import QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.registry.models import BlobLink, Upload
from hostpanel.tenants import signals
from hostpanel.tenants.models import Quota, Role, Tenant
from hostpanel.tenants.storage import storage_use
from hostpanel.usage.storage import record_tenant_storage
from hostpanel.volumes import services as volumes
from hostpanel.volumes.models import Volume
from tests.hostpanel.registry.conftest import Registry, digest_of, error_code

MiB = 1024**2
Reg = Callable[..., Registry]


def upload_image(api: Any, user: Any, tenant: Tenant, name: str, size: int) -> Any:
    return api(user).post(
        f"/api/v1/tenants/{tenant.slug}/images/",
        {"name": name, "archive": SimpleUploadedFile("app.tar", b"i" * size)},
        format="multipart",
    )


def test_the_storage_quota_refuses_a_volume_an_image_and_a_push_over_it(
    api: Any,
    acme: Tenant,
    host: Host,
    member: Any,
    reg: Callable[..., Registry],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.VAR_DIR = tmp_path
    Quota.objects.filter(tenant=acme).update(disk_bytes=12 * MiB)
    dev = member(acme, Role.DEVELOPER)
    client = reg(acme)
    # each resource stores some: 4 MiB volume, 3 MiB image, 2 MiB blob, 1 MiB of container files
    volumes.create_volume(Actor(user=dev), acme, "data", 4 * MiB)
    assert upload_image(api, dev, acme, "web:1", 3 * MiB).status_code == 201
    client.push_blob("acme/app", b"b" * (2 * MiB))
    record_tenant_storage(host, acme, rootfs_bytes=MiB, build_cache_bytes=0)
    stored = {"volumes": 4 * MiB, "images": 3 * MiB, "registry": 2 * MiB, "rootfs": MiB, "build_cache": 0}
    assert storage_use(acme).to_dict() == {**stored, "total": 10 * MiB}

    # 2 MiB left: a 4 MiB volume, a 3 MiB image and a 3 MiB blob are each refused, nothing kept
    with pytest.raises(QuotaExceeded, match="storage: 4 MiB asked, 2 MiB left"):
        volumes.create_volume(Actor(user=dev), acme, "more", 4 * MiB)
    r = upload_image(api, dev, acme, "web:2", 3 * MiB)
    assert r.status_code == 422, r.json()
    assert r.json()["error"]["details"]["storage"] == {**stored, "total": 10 * MiB}
    big = b"y" * (3 * MiB)
    r = client.request("POST", f"/v2/acme/app/blobs/uploads/?digest={digest_of(big)}", big)
    assert r.status_code == 403 and error_code(r) == "DENIED"
    assert "over its storage quota" in r.json()["errors"][0]["message"]
    assert list(Volume.objects.filter(tenant=acme).values_list("name", flat=True)) == ["data"]
    assert not Image.objects.filter(reference="acme/web:2").exists()
    assert not BlobLink.objects.filter(digest=digest_of(big)).exists() and not Upload.objects.exists()
    assert storage_use(acme).total == 10 * MiB

    # the volume's room, once freed, takes the image and then the push
    volumes.delete_volume(Actor(user=dev), Volume.objects.get(tenant=acme, name="data"))
    assert upload_image(api, dev, acme, "web:2", 3 * MiB).status_code == 201
    assert (
        client.request("POST", f"/v2/acme/app/blobs/uploads/?digest={digest_of(big)}", big).status_code == 201
    )
    assert storage_use(acme).to_dict() == {
        **stored,
        "volumes": 0,
        "images": 6 * MiB,
        "registry": 5 * MiB,
        "total": 12 * MiB,
    }


def test_a_kind_nobody_answers_is_an_error_never_a_silent_zero(acme: Tenant) -> None:
    assert signals.stored_bytes.disconnect(dispatch_uid="images-stored-bytes")
    try:
        with pytest.raises(RuntimeError, match="no app answered images"):
            storage_use(acme)
    finally:
        from hostpanel.images.services import stored_bytes

        signals.stored_bytes.connect(stored_bytes, dispatch_uid="images-stored-bytes")
    assert storage_use(acme).images == 0


def test_a_kind_answered_twice_is_an_error(acme: Tenant) -> None:
    def twice(sender: object, **kwargs: object) -> dict[str, int]:
        return {"volumes": 1}

    signals.stored_bytes.connect(twice, dispatch_uid="test-twice")
    try:
        with pytest.raises(RuntimeError, match="'volumes', unknown or answered twice"):
            storage_use(acme)
    finally:
        signals.stored_bytes.disconnect(dispatch_uid="test-twice")
