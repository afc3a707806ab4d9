"""Registry GC: keeps what any manifest or a recent push needs, deletes the rest, reaps old uploads."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from hostpanel.registry.gc import collect_garbage
from hostpanel.registry.models import BlobLink, Upload
from hostpanel.tenants.models import Tenant
from tests.hostpanel.registry.conftest import Registry, digest_of

pytestmark = pytest.mark.django_db
Reg = Callable[..., Registry]


def stored(root: Path, digest: str) -> bool:
    return (root / "blobs" / "sha256" / digest.split(":", 1)[1]).is_file()


def age_everything(root: Path, seconds: float = 7200) -> None:
    """Make every blob file look written ``seconds`` ago, and every link as old."""
    old = time.time() - seconds
    for path in (root / "blobs" / "sha256").iterdir():
        os.utime(path, (old, old))
    BlobLink.objects.update(created_at="2000-01-01T00:00:00Z")


def test_gc_keeps_what_manifests_need_and_deletes_the_rest(
    reg: Reg, acme: Tenant, globex: Tenant, registry_root: Path
) -> None:
    client = reg(acme)
    manifest = client.push_image("acme/app", "1", [b"used layer"])
    loose = client.push_blob("acme/app", b"pushed, never used by a manifest")
    # a layer another repository's manifest needs while this one's manifest is deleted
    shared_manifest = reg(globex).push_image("globex/app", "1", [b"shared layer"])
    client.push_blob("acme/gone", b"shared layer")
    gone = client.push_image("acme/gone", "1", [b"shared layer", b"only acme/gone"])
    assert client.request("DELETE", f"/v2/acme/gone/manifests/{gone}").status_code == 202
    age_everything(registry_root)
    report = collect_garbage()
    assert sorted(report.deleted_blobs) == sorted([loose, gone, digest_of(b"only acme/gone")])
    for digest in (manifest, digest_of(b"used layer"), shared_manifest, digest_of(b"shared layer")):
        assert stored(registry_root, digest), digest
    assert not stored(registry_root, loose)
    assert client.request("GET", "/v2/acme/app/manifests/1").status_code == 200
    assert client.request("GET", f"/v2/acme/app/blobs/{digest_of(b'used layer')}").status_code == 200
    assert client.request("GET", f"/v2/acme/app/blobs/{loose}").status_code == 404  # its link went too


def test_gc_keeps_recent_blobs_a_push_in_progress_still_links(
    reg: Reg, acme: Tenant, registry_root: Path
) -> None:
    client = reg(acme)
    fresh = client.push_blob("acme/app", b"uploaded a moment ago, manifest still to come")
    report = collect_garbage()
    assert report.deleted_blobs == [] and stored(registry_root, fresh)
    body = client.manifest_for("acme/app", [b"uploaded a moment ago, manifest still to come"])
    r = client.request(
        "PUT", "/v2/acme/app/manifests/1", body, content_type="application/vnd.oci.image.manifest.v1+json"
    )
    assert r.status_code == 201


def test_gc_never_touches_an_upload_in_progress(reg: Reg, acme: Tenant, registry_root: Path) -> None:
    client = reg(acme)
    data = b"0123456789" * 100
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, data[:500], content_range="0-499")
    report = collect_garbage(grace_seconds=0)
    assert report.reaped_uploads == 0 and Upload.objects.count() == 1
    client.request("PATCH", location, data[500:], content_range="500-999")
    assert client.request("PUT", f"{location}?digest={digest_of(data)}").status_code == 201
    collect_garbage(grace_seconds=3600)
    assert stored(registry_root, digest_of(data))


def test_gc_reaps_expired_uploads_and_stray_files(
    reg: Reg, acme: Tenant, registry_root: Path, settings: Any
) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, b"abandoned")
    stray = registry_root / "uploads" / "left-by-a-crash"
    stray.write_bytes(b"x")
    os.utime(stray, (0, 0))
    Upload.objects.update(updated_at="2000-01-01T00:00:00Z")
    report = collect_garbage()
    assert report.reaped_uploads == 1 and not Upload.objects.exists()
    assert list((registry_root / "uploads").iterdir()) == []


def test_dry_run_and_the_command(reg: Reg, acme: Tenant, registry_root: Path, capsys: Any) -> None:
    loose = reg(acme).push_blob("acme/app", b"loose")
    age_everything(registry_root)
    call_command("registry_gc", "--dry-run")
    assert "would delete 1 blobs" in capsys.readouterr().out and stored(registry_root, loose)
    call_command("registry_gc", "--grace-minutes", "1")
    assert "deleted 1 blobs" in capsys.readouterr().out and not stored(registry_root, loose)
