"""An xz bomb uploaded through the API is refused with a clear 400 and leaves nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from tests.engine.unit.test_images_bombs import xz_bomb
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_an_xz_bomb_upload_is_refused_and_nothing_is_stored(
    api: Any, tenant: Tenant, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    bomb = xz_bomb(tmp_path / "bomb.tar.xz").read_bytes()
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    r = api(dev).post(
        f"/api/v1/tenants/{tenant.slug}/images/",
        {"name": "bomb:1", "archive": SimpleUploadedFile("bomb.tar.xz", bomb)},
        format="multipart",
    )
    assert r.status_code == 400, r.json()
    message = r.json()["error"]["message"]
    assert "more than 100 times its compressed size" in message and "decompression bomb" in message
    assert not Image.objects.filter(reference="acme/bomb:1").exists()
    assert list((tmp_path / "var" / "images" / tenant.slug).iterdir()) == []
