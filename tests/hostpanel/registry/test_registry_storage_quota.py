"""Registry blobs count against the tenant's one storage quota: a push over it is DENIED, nothing kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hostpanel.registry.models import BlobLink, Upload
from hostpanel.tenants.models import Quota, Tenant
from hostpanel.tenants.storage import storage_use
from tests.hostpanel.registry.conftest import Registry, digest_of, error_code

Reg = Callable[..., Registry]


def test_a_push_over_the_storage_quota_is_denied_and_keeps_nothing(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    small = b"x" * 3000
    client.push_blob("acme/app", small)
    assert storage_use(acme).registry == 3000
    Quota.objects.filter(tenant=acme).update(disk_bytes=5000)
    big = b"y" * 4000  # 3000 + 4000 > 5000
    r = client.request("POST", f"/v2/acme/app/blobs/uploads/?digest={digest_of(big)}", big)
    assert r.status_code == 403 and error_code(r) == "DENIED"
    assert "over its storage quota" in r.json()["errors"][0]["message"]
    assert not BlobLink.objects.filter(digest=digest_of(big)).exists()
    assert not Upload.objects.exists()
    assert storage_use(acme).registry == 3000
    # chunked: the chunk that crosses the quota is cut off again
    start = client.request("POST", "/v2/acme/app/blobs/uploads/")
    location = start["Location"]
    r = client.request("PATCH", location, big, content_type="application/octet-stream")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    assert Upload.objects.get().size == 0


def test_the_quota_api_shows_storage_by_kind(api: Any, acme: Tenant, reg: Reg, member: Any) -> None:
    reg(acme).push_blob("acme/app", b"z" * 1234)
    user = member(acme, "viewer")
    body = api(user).get(f"/api/v1/tenants/{acme.slug}/quota/").json()
    assert body["storage"] == {
        "volumes": 0,
        "images": 0,
        "registry": 1234,
        "rootfs": 0,
        "build_cache": 0,
        "total": 1234,
    }
    assert body["usage"]["disk_bytes"] == 1234
