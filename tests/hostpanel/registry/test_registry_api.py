"""The /v2/ endpoints of the OCI Distribution Spec with Django's test client: pull, push, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.registry.models import BlobLink, Manifest, Repository, Tag, Upload
from hostpanel.tenants.models import Tenant
from tests.hostpanel.registry.conftest import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    basic,
    digest_of,
    error_code,
)

pytestmark = pytest.mark.django_db
Reg = Callable[..., Registry]


def blob_files(root: Path) -> set[str]:
    d = root / "blobs" / "sha256"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def upload_files(root: Path) -> list[Path]:
    d = root / "uploads"
    return list(d.iterdir()) if d.is_dir() else []


# ---- base and auth ------------------------------------------------------------------------
def test_base_needs_credentials_and_challenges_with_the_token_realm(reg: Reg, acme: Tenant) -> None:
    r = reg().request("GET", "/v2/")
    assert r.status_code == 401
    assert error_code(r) == "UNAUTHORIZED"
    assert r["WWW-Authenticate"] == 'Bearer realm="http://testserver/v2/token",service="hostpanel"'
    assert r["Docker-Distribution-API-Version"] == "registry/2.0"
    ok = reg(acme).request("GET", "/v2/")
    assert ok.status_code == 200 and ok.json() == {}


def test_a_repository_request_without_credentials_names_its_scope(reg: Reg, acme: Tenant) -> None:
    r = reg().request("POST", "/v2/acme/app/blobs/uploads/")
    assert r.status_code == 401
    assert 'scope="repository:acme/app:pull,push"' in r["WWW-Authenticate"]


def test_wrong_credentials_are_refused(reg: Reg, acme: Tenant) -> None:
    for auth in (
        basic("x", "hp_not-a-token"),
        basic("x", "wrong-password"),
        "Bearer hpreg.forged",
        "Digest x",
    ):
        r = reg(authorization=auth).request("GET", "/v2/")
        assert r.status_code == 401, auth
        assert error_code(r) == "UNAUTHORIZED"


def test_a_users_password_works_and_a_staff_password_makes_an_admin(reg: Reg, acme: Tenant) -> None:
    from tests.hostpanel.factories import UserFactory

    UserFactory(username="boss", password="s3cret-pass", is_staff=True)
    admin = reg(authorization=basic("boss", "s3cret-pass"))
    assert admin.request("GET", "/v2/").status_code == 200
    admin.push_image("library/base", "1")  # only admins may push library/


def test_the_token_flow_grants_what_the_user_may_and_nothing_more(
    reg: Reg, acme: Tenant, globex: Tenant, token_for: Any
) -> None:
    secret = token_for(acme, "viewer")
    r = reg(authorization=basic("u", secret)).request(
        "GET",
        "/v2/token?service=hostpanel&scope=repository:acme/app:pull,push&scope=repository:globex/x:pull",
    )
    assert r.status_code == 200
    token = r.json()["token"]
    assert r.json()["access_token"] == token and r.json()["expires_in"] > 0
    bearer = reg(authorization=f"Bearer {token}")
    # pull was granted; push was not (a viewer), globex was not at all (another tenant)
    dev = reg(acme)
    dev.push_image("acme/app", "1")
    assert bearer.request("GET", "/v2/acme/app/manifests/1").status_code == 200
    denied = bearer.request("POST", "/v2/acme/app/blobs/uploads/")
    assert denied.status_code == 401
    assert 'error="insufficient_scope"' in denied["WWW-Authenticate"]
    assert bearer.request("GET", "/v2/globex/x/tags/list").status_code == 401
    assert bearer.request("GET", "/v2/acme/other/tags/list").status_code == 401  # not in the token's scope


def test_a_bearer_token_pushes_and_dies_with_its_api_token_or_its_time(
    reg: Reg, acme: Tenant, token_for: Any, settings: Any
) -> None:
    from hostpanel.tenants.models import ApiToken

    secret = token_for(acme)
    get = reg(authorization=basic("u", secret)).request
    token = get("GET", "/v2/token?scope=repository:acme/app:push,pull").json()["token"]
    bearer = reg(authorization=f"Bearer {token}")
    bearer.push_image("acme/app", "1")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert reg(authorization=f"Bearer {tampered}").request("GET", "/v2/acme/app/tags/list").status_code == 401
    ApiToken.objects.update(revoked_at="2020-01-01T00:00:00Z")
    assert bearer.request("GET", "/v2/acme/app/tags/list").status_code == 401
    settings.HOSTPANEL_REGISTRY_TOKEN_TTL = -1
    ApiToken.objects.update(revoked_at=None)
    expired = get("GET", "/v2/token?scope=repository:acme/app:pull").json()["token"]
    r = reg(authorization=f"Bearer {expired}").request("GET", "/v2/acme/app/tags/list")
    assert r.status_code == 401 and "expired" in r.json()["errors"][0]["message"]


def test_the_token_endpoint_needs_credentials(reg: Reg, acme: Tenant) -> None:
    assert reg().request("GET", "/v2/token?scope=repository:acme/app:pull").status_code == 401


def test_an_invalid_repository_name_is_name_invalid(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    for name in ("app", "acme/App", "acme//x", "acme/-x"):
        r = client.request("GET", f"/v2/{name}/tags/list")
        assert r.status_code == 400 and error_code(r) == "NAME_INVALID", name


# ---- blobs --------------------------------------------------------------------------------
def test_monolithic_push_then_get_head_and_ranges(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    data = bytes(range(256)) * 40
    digest = digest_of(data)
    r = client.request("POST", f"/v2/acme/app/blobs/uploads/?digest={digest}", data)
    assert r.status_code == 201
    assert r["Location"] == f"/v2/acme/app/blobs/{digest}" and r["Docker-Content-Digest"] == digest
    got = client.request("GET", f"/v2/acme/app/blobs/{digest}")
    assert got.status_code == 200 and b"".join(got.streaming_content) == data
    assert got["Docker-Content-Digest"] == digest and got["Content-Length"] == str(len(data))
    head = client.request("HEAD", f"/v2/acme/app/blobs/{digest}")
    assert head.status_code == 200 and head["Content-Length"] == str(len(data)) and head.content == b""
    part = client.request("GET", f"/v2/acme/app/blobs/{digest}", range="bytes=10-19")
    assert part.status_code == 206 and b"".join(part.streaming_content) == data[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = client.request("GET", f"/v2/acme/app/blobs/{digest}", range="bytes=-5")
    assert b"".join(tail.streaming_content) == data[-5:]
    bad = client.request("GET", f"/v2/acme/app/blobs/{digest}", range=f"bytes={len(data)}-")
    assert bad.status_code == 416 and bad["Content-Range"] == f"bytes */{len(data)}"


def test_an_unknown_blob_is_blob_unknown(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    client.push_blob("acme/app", b"x")
    r = client.request("GET", f"/v2/acme/app/blobs/{digest_of(b'missing')}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert client.request("HEAD", f"/v2/acme/app/blobs/{digest_of(b'missing')}").status_code == 404
    r = client.request("GET", "/v2/acme/app/blobs/sha256:nothex")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_a_blob_is_read_only_through_a_repository_that_links_it(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    digest = client.push_blob("acme/one", b"only in one")
    client.push_blob("acme/two", b"something else")
    assert client.request("GET", f"/v2/acme/two/blobs/{digest}").status_code == 404


def test_post_then_put_with_the_whole_body(reg: Reg, acme: Tenant, registry_root: Path) -> None:
    client = reg(acme)
    r = client.request("POST", "/v2/acme/app/blobs/uploads/")
    assert r.status_code == 202 and r["Range"] == "0-0" and r["Docker-Upload-UUID"]
    location = r["Location"]
    assert location == f"/v2/acme/app/blobs/uploads/{r['Docker-Upload-UUID']}"
    data = b"one request" * 1000
    done = client.request("PUT", f"{location}?digest={digest_of(data)}", data)
    assert done.status_code == 201 and done["Docker-Content-Digest"] == digest_of(data)
    assert client.request("GET", location).status_code == 404  # the upload is over
    assert upload_files(registry_root) == [] and not Upload.objects.exists()


def test_chunked_upload_with_status_and_an_out_of_order_chunk(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    data = b"abcdefghij" * 100
    r = client.request("PATCH", location, data[:300], content_range="0-299")
    assert r.status_code == 202 and r["Range"] == "0-299" and r["Location"] == location
    status = client.request("GET", location)
    assert status.status_code == 204 and status["Range"] == "0-299"
    skipped = client.request("PATCH", location, data[400:500], content_range="400-499")
    assert skipped.status_code == 416 and skipped["Range"] == "0-299"
    assert error_code(skipped) == "BLOB_UPLOAD_INVALID"
    r = client.request("PATCH", location, data[300:700], content_range="300-699")
    assert r["Range"] == "0-699"
    r = client.request("PATCH", location, data[700:])  # a streamed chunk without Content-Range
    assert r.status_code == 202 and r["Range"] == f"0-{len(data) - 1}"
    done = client.request("PUT", f"{location}?digest={digest_of(data)}")
    assert done.status_code == 201
    got = client.request("GET", f"/v2/acme/app/blobs/{digest_of(data)}")
    assert b"".join(got.streaming_content) == data


def test_the_closing_put_may_carry_the_last_chunk(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, b"first,", content_range="0-5")
    done = client.request(
        "PUT", f"{location}?digest={digest_of(b'first,last')}", b"last", content_range="6-9"
    )
    assert done.status_code == 201


def test_a_short_chunk_is_refused_and_the_upload_stays_as_it_was(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, b"12345", content_range="0-4")
    r = client.request("PATCH", location, b"678", content_range="5-14")
    assert r.status_code == 400 and error_code(r) == "BLOB_UPLOAD_INVALID"
    assert client.request("GET", location)["Range"] == "0-4"
    assert client.request("PATCH", location, b"6789", content_range="5-8")["Range"] == "0-8"


def test_wrong_digest_is_digest_invalid_and_nothing_is_stored(
    reg: Reg, acme: Tenant, registry_root: Path
) -> None:
    client = reg(acme)
    wrong = digest_of(b"something else")
    r = client.request("POST", f"/v2/acme/app/blobs/uploads/?digest={wrong}", b"the real bytes")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, b"chunk", content_range="0-4")
    r = client.request("PUT", f"{location}?digest={wrong}")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = client.request("PUT", f"{location}?digest=sha256:abc")  # the upload was dropped
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert blob_files(registry_root) == set()
    assert upload_files(registry_root) == []
    assert not BlobLink.objects.exists() and not Repository.objects.exists() and not Upload.objects.exists()


def test_a_put_without_a_valid_digest_is_digest_invalid(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    r = client.request("PUT", location, b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_a_half_done_upload_leaves_nothing_visible(reg: Reg, acme: Tenant, registry_root: Path) -> None:
    client = reg(acme)
    data = b"half" * 1000
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, data[:2000], content_range="0-1999")
    # the client goes away: nothing of it is in the repository
    assert client.request("GET", f"/v2/acme/app/blobs/{digest_of(data)}").status_code == 404
    assert error_code(client.request("GET", "/v2/acme/app/tags/list")) == "NAME_UNKNOWN"
    assert blob_files(registry_root) == set() and not Repository.objects.exists()


def test_an_expired_upload_is_gone(reg: Reg, acme: Tenant, settings: Any, registry_root: Path) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, b"abc", content_range="0-2")
    settings.HOSTPANEL_REGISTRY_UPLOAD_TTL = -1
    r = client.request("PATCH", location, b"def", content_range="3-5")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert upload_files(registry_root) == [] and not Upload.objects.exists()


def test_cancelling_an_upload(reg: Reg, acme: Tenant, registry_root: Path) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    client.request("PATCH", location, b"abc")
    assert client.request("DELETE", location).status_code == 204
    r = client.request("GET", location)
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert upload_files(registry_root) == []
    assert client.request("GET", "/v2/acme/app/blobs/uploads/not-a-uuid").status_code == 404


def test_an_upload_belongs_to_its_repository(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    location = client.request("POST", "/v2/acme/one/blobs/uploads/")["Location"]
    other = location.replace("/acme/one/", "/acme/two/")
    assert error_code(client.request("PATCH", other, b"x")) == "BLOB_UPLOAD_UNKNOWN"


def test_mount_from_a_readable_repository_links_the_blob(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    digest = client.push_blob("acme/base", b"shared layer")
    r = client.request("POST", f"/v2/acme/app/blobs/uploads/?mount={digest}&from=acme/base")
    assert r.status_code == 201 and r["Location"] == f"/v2/acme/app/blobs/{digest}"
    assert r["Docker-Content-Digest"] == digest
    assert client.request("HEAD", f"/v2/acme/app/blobs/{digest}").status_code == 200


def test_mount_of_a_missing_blob_falls_back_to_an_upload(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    client.push_blob("acme/base", b"x")
    r = client.request("POST", f"/v2/acme/app/blobs/uploads/?mount={digest_of(b'nope')}&from=acme/base")
    assert r.status_code == 202 and "/blobs/uploads/" in r["Location"]


def test_delete_blob(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    digest = client.push_blob("acme/app", b"loose")
    assert client.request("DELETE", f"/v2/acme/app/blobs/{digest}").status_code == 202
    assert client.request("GET", f"/v2/acme/app/blobs/{digest}").status_code == 404
    assert error_code(client.request("DELETE", f"/v2/acme/app/blobs/{digest}")) == "BLOB_UNKNOWN"
    assert AuditLog.objects.filter(action="registry.blob.delete", result="ok").count() == 1


def test_a_blob_a_manifest_uses_cannot_be_deleted(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    client.push_image("acme/app", "1", [b"layer"])
    r = client.request("DELETE", f"/v2/acme/app/blobs/{digest_of(b'layer')}")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED" and r["Allow"] == "GET, HEAD"
    assert "delete that manifest first" in r.json()["errors"][0]["message"]


# ---- manifests ----------------------------------------------------------------------------
def test_push_and_pull_a_manifest_by_tag_and_digest(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    body = client.manifest_for("acme/app", [b"l1", b"l2"])
    r = client.request("PUT", "/v2/acme/app/manifests/v1", body, content_type=OCI_MANIFEST)
    digest = digest_of(body)
    assert r.status_code == 201
    assert r["Docker-Content-Digest"] == digest and r["Location"] == f"/v2/acme/app/manifests/{digest}"
    for ref in ("v1", digest):
        got = client.request("GET", f"/v2/acme/app/manifests/{ref}")
        assert got.status_code == 200 and got.content == body
        assert got["Content-Type"] == OCI_MANIFEST and got["Docker-Content-Digest"] == digest
        head = client.request("HEAD", f"/v2/acme/app/manifests/{ref}")
        assert head.status_code == 200 and head["Content-Length"] == str(len(body)) and head.content == b""
    entry = AuditLog.objects.get(action="registry.manifest.push")
    assert entry.result == "ok" and entry.tenant == acme


def test_a_docker_schema2_manifest_keeps_its_media_type(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    doc = json.loads(client.manifest_for("acme/app", [b"layer"]))
    doc["mediaType"] = DOCKER_MANIFEST
    body = json.dumps(doc).encode()
    assert (
        client.request("PUT", "/v2/acme/app/manifests/d", body, content_type=DOCKER_MANIFEST).status_code
        == 201
    )
    assert client.request("GET", "/v2/acme/app/manifests/d")["Content-Type"] == DOCKER_MANIFEST


def test_an_index_needs_its_manifests_in_the_repository(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    child = client.push_image("acme/app", "amd64")
    size = Manifest.objects.get(digest=child).size
    missing = digest_of(b"no such manifest")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}],
    }
    r = client.request(
        "PUT", "/v2/acme/app/manifests/multi", json.dumps(index).encode(), content_type=OCI_INDEX
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"] == {"digest": missing}
    index["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}]
    body = json.dumps(index).encode()
    assert (
        client.request("PUT", "/v2/acme/app/manifests/multi", body, content_type=OCI_INDEX).status_code == 201
    )
    assert client.request("GET", "/v2/acme/app/manifests/multi")["Content-Type"] == OCI_INDEX
    r = client.request("DELETE", f"/v2/acme/app/manifests/{child}")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"  # the index still needs it
    assert Manifest.objects.filter(digest=child).exists()


def test_a_manifest_with_a_blob_the_repository_lacks_is_refused_and_nothing_stays(
    reg: Reg, acme: Tenant
) -> None:
    client = reg(acme)
    client.push_blob("acme/other", b"layer in another repository")
    config = b"{}"
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": digest_of(config), "size": 2},
        "layers": [],
    }
    r = client.request("PUT", "/v2/acme/app/manifests/1", json.dumps(doc).encode(), content_type=OCI_MANIFEST)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    doc["config"]["digest"] = client.push_blob("acme/app", config)
    doc["layers"] = [{"mediaType": "x", "digest": digest_of(b"layer in another repository"), "size": 27}]
    r = client.request("PUT", "/v2/acme/app/manifests/1", json.dumps(doc).encode(), content_type=OCI_MANIFEST)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert not Manifest.objects.filter(repository__name="acme/app").exists() and not Tag.objects.exists()
    assert AuditLog.objects.filter(action="registry.manifest.push", result="failed").count() == 2


def test_bad_manifests_are_manifest_invalid(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    good = client.manifest_for("acme/app", [b"l"])
    cases = [
        (b"not json", OCI_MANIFEST),
        (b"[1]", OCI_MANIFEST),
        (good, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (good, OCI_INDEX),  # mediaType in the body differs
        (json.dumps({"schemaVersion": 1, "config": {}}).encode(), "application/json"),
    ]
    for body, content_type in cases:
        r = client.request("PUT", "/v2/acme/app/manifests/1", body, content_type=content_type)
        assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", (body, content_type)
    assert not Manifest.objects.exists()


def test_a_manifest_pushed_by_a_wrong_digest_is_digest_invalid(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    body = client.manifest_for("acme/app", [b"l"])
    r = client.request(
        "PUT", f"/v2/acme/app/manifests/{digest_of(b'other')}", body, content_type=OCI_MANIFEST
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = client.request("PUT", f"/v2/acme/app/manifests/{digest_of(body)}", body, content_type=OCI_MANIFEST)
    assert r.status_code == 201 and not Tag.objects.exists()


def test_an_unknown_manifest_is_manifest_unknown(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    client.push_image("acme/app", "1")
    for ref in ("2", digest_of(b"x")):
        r = client.request("GET", f"/v2/acme/app/manifests/{ref}")
        assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert client.request("HEAD", "/v2/acme/app/manifests/2").status_code == 404


def test_delete_a_manifest_by_digest_takes_its_tags(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    digest = client.push_image("acme/app", "1")
    body = client.request("GET", "/v2/acme/app/manifests/1").content
    client.request("PUT", "/v2/acme/app/manifests/latest", body, content_type=OCI_MANIFEST)
    assert client.request("DELETE", f"/v2/acme/app/manifests/{digest}").status_code == 202
    assert client.request("GET", "/v2/acme/app/manifests/1").status_code == 404
    assert client.request("GET", "/v2/acme/app/tags/list").json()["tags"] == []
    assert AuditLog.objects.filter(action="registry.manifest.delete", result="ok").count() == 1


def test_delete_a_tag_keeps_the_manifest(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    digest = client.push_image("acme/app", "1")
    assert client.request("DELETE", "/v2/acme/app/manifests/1").status_code == 202
    assert client.request("GET", f"/v2/acme/app/manifests/{digest}").status_code == 200
    assert client.request("GET", "/v2/acme/app/manifests/1").status_code == 404


def test_unsupported_methods(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    r = client.request("POST", "/v2/acme/app/manifests/1")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"
    assert r["Allow"] == "GET, HEAD, PUT, DELETE"
    assert reg(acme).request("GET", "/v2/acme/app/nothing").status_code == 404


# ---- tags ---------------------------------------------------------------------------------
def test_tags_list_with_pagination(reg: Reg, acme: Tenant) -> None:
    client = reg(acme)
    digest = client.push_image("acme/app", "a")
    body = client.request("GET", f"/v2/acme/app/manifests/{digest}").content
    for tag in ("d", "b", "c"):
        client.request("PUT", f"/v2/acme/app/manifests/{tag}", body, content_type=OCI_MANIFEST)
    assert client.request("GET", "/v2/acme/app/tags/list").json() == {
        "name": "acme/app",
        "tags": list("abcd"),
    }
    page = client.request("GET", "/v2/acme/app/tags/list?n=2")
    assert page.json()["tags"] == ["a", "b"]
    assert page["Link"] == '</v2/acme/app/tags/list?n=2&last=b>; rel="next"'
    last = client.request("GET", "/v2/acme/app/tags/list?n=2&last=b")
    assert last.json()["tags"] == ["c", "d"] and "Link" not in last
    assert client.request("GET", "/v2/acme/app/tags/list?last=c").json()["tags"] == ["d"]
    assert client.request("GET", "/v2/acme/app/tags/list?n=0").json()["tags"] == []
    assert client.request("GET", "/v2/acme/app/tags/list?n=x").status_code == 400
    assert error_code(client.request("GET", "/v2/acme/none/tags/list")) == "NAME_UNKNOWN"


def test_a_damaged_blob_is_never_served_as_good(reg: Reg, acme: Tenant, registry_root: Path) -> None:
    from engine.errors import CorruptBlob

    client = reg(acme)
    manifest = client.push_image("acme/app", "1", [b"original layer"])
    blobs = registry_root / "blobs" / "sha256"
    (blobs / manifest.split(":")[1]).write_bytes(b'{"tampered": true}')
    r = client.request("GET", "/v2/acme/app/manifests/1")
    assert r.status_code == 500 and "corrupt" in r.json()["errors"][0]["message"]
    (blobs / digest_of(b"original layer").split(":")[1]).write_bytes(b"altered layer!")
    r = client.request("GET", f"/v2/acme/app/blobs/{digest_of(b'original layer')}")
    with pytest.raises(CorruptBlob):
        b"".join(r.streaming_content)  # the body stream breaks off instead of ending as if it were whole


def test_bodies_are_streamed_past_djangos_in_memory_limit(reg: Reg, acme: Tenant, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024  # the views never load request.body
    client = reg(acme)
    big = b"x" * 100_000
    assert client.push_blob("acme/app", big) == digest_of(big)
    location = client.request("POST", "/v2/acme/app/blobs/uploads/")["Location"]
    assert client.request("PATCH", location, big, content_range=f"0-{len(big) - 1}").status_code == 202
