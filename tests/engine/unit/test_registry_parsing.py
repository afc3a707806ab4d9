"""Registry client: challenge, reference, manifest and platform parsing, and the login file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from engine.errors import CorruptBlob, InvalidArchive, InvalidReference, InvalidSpec
from engine.images.digest import sha256_digest
from engine.images.oci import MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_INDEX, MT_MANIFEST, host_architecture
from engine.registry.challenge import parse_challenges, pick_challenge
from engine.registry.client import error_detail
from engine.registry.credentials import AuthFile, Credentials, parse_credentials
from engine.registry.manifests import media_type_of, select_platform, verify_manifest
from engine.registry.remote import Endpoint, parse_registry_url, parse_remote, remote_in


# -- WWW-Authenticate ---------------------------------------------------------------------------
def test_bearer_challenge_with_commas_inside_quoted_scope() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push"'
    )
    (c,) = parse_challenges(header)
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.example.com/token"
    assert c.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:team/app:pull,push",
    }


def test_basic_challenge_and_preference_for_bearer() -> None:
    assert parse_challenges('Basic realm="Registry Realm"')[0].params == {"realm": "Registry Realm"}
    header = 'Basic realm="x", Bearer realm="http://h/t",service=s'
    picked = pick_challenge(header)
    assert picked is not None and picked.scheme == "bearer"
    assert picked.params["service"] == "s"


def test_challenge_scheme_case_escapes_and_garbage() -> None:
    (c,) = parse_challenges(r'BEARER Realm="http://h/t?a=1", error="insufficient_scope", x="a\"b"')
    assert c.scheme == "bearer" and c.realm == "http://h/t?a=1"
    assert c.params["error"] == "insufficient_scope" and c.params["x"] == 'a"b'
    assert pick_challenge("Negotiate abc") is None
    assert pick_challenge("") is None


# -- references -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("localhost:5000/team/app:1.0", "localhost:5000", "team/app", "1.0", None),
        ("127.0.0.1:8000/acme/web", "127.0.0.1:8000", "acme/web", "latest", None),
        ("registry.example.com/a/b/c:v2", "registry.example.com", "a/b/c", "v2", None),
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("team/app:3", "docker.io", "team/app", "3", None),
        ("localhost/x@sha256:" + "a" * 64, "localhost", "x", None, "sha256:" + "a" * 64),
    ],
)
def test_parse_remote(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_remote(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_remote_manifest_ref_and_local_name() -> None:
    ref = parse_remote("localhost:5000/team/app:1.0")
    assert ref.manifest_ref == "1.0" and ref.local_name == "localhost:5000/team/app:1.0"
    assert parse_remote("busybox").local_name == "busybox:latest"
    assert parse_remote("busybox").endpoint.api_host == "registry-1.docker.io"
    pinned = parse_remote("h:1/a/b:t@sha256:" + "b" * 64)
    assert pinned.manifest_ref == "sha256:" + "b" * 64


@pytest.mark.parametrize("bad", ["", "team/App", "a/b:bad tag", "x@sha256:123", "h:5000/a//b"])
def test_parse_remote_rejects_bad_references(bad: str) -> None:
    with pytest.raises(InvalidReference):
        parse_remote(bad)


def test_registry_urls() -> None:
    assert parse_registry_url("http://127.0.0.1:8000/") == Endpoint("127.0.0.1:8000", "http")
    assert parse_registry_url("https://Reg.Example.com") == Endpoint("reg.example.com", "https")
    assert parse_registry_url("localhost:5000") == Endpoint("localhost:5000", None)
    for bad in ("ftp://h", "http://h/path", "http://u:p@h", "http://"):
        with pytest.raises(InvalidReference, match="invalid registry address"):
            parse_registry_url(bad)


def test_remote_in_endpoint() -> None:
    ref = remote_in(parse_registry_url("http://127.0.0.1:9/"), "acme/web:2")
    assert (ref.registry, ref.repository, ref.tag, ref.endpoint.scheme) == (
        "127.0.0.1:9",
        "acme/web",
        "2",
        "http",
    )
    with pytest.raises(InvalidReference, match="names a registry"):
        remote_in(Endpoint("h:1"), "other.example:5000/acme/web:2")


# -- manifests and platforms ----------------------------------------------------------------------
def _index(platforms: list[tuple[str, str]], media_type: str = MT_INDEX) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": sha256_digest(f"{os_}/{arch}".encode()),
                    "size": 1,
                    "platform": {"os": os_, "architecture": arch},
                }
                for os_, arch in platforms
            ],
        }
    ).encode()


def test_select_platform_prefers_host_architecture() -> None:
    host = host_architecture()
    data = _index([("linux", "s390x"), ("windows", host), ("linux", host), ("linux", "arm64")])
    assert select_platform(data, "idx") == sha256_digest(f"linux/{host}".encode())


def test_select_platform_falls_back_to_amd64_and_docker_lists() -> None:
    data = _index([("linux", "mips64le"), ("linux", "amd64")], MT_DOCKER_LIST)
    assert select_platform(data, "idx") == sha256_digest(b"linux/amd64")


def test_select_platform_names_what_the_index_has() -> None:
    with pytest.raises(InvalidArchive, match=r"linux/mips64le, linux/s390x"):
        select_platform(_index([("linux", "s390x"), ("linux", "mips64le")]), "idx")


def test_media_type_from_field_header_or_shape() -> None:
    assert media_type_of(b'{"mediaType":"%s","layers":[]}' % MT_MANIFEST.encode(), "", "m") == MT_MANIFEST
    assert media_type_of(b'{"schemaVersion":2,"layers":[]}', MT_DOCKER_MANIFEST, "m") == MT_DOCKER_MANIFEST
    assert media_type_of(b'{"schemaVersion":2,"manifests":[]}', "", "m") == MT_INDEX
    with pytest.raises(InvalidArchive, match="schema 1"):
        media_type_of(b'{"schemaVersion":1,"fsLayers":[]}', "application/json", "m")
    with pytest.raises(InvalidArchive, match="unsupported media type"):
        media_type_of(b'{"mediaType":"text/plain"}', "", "m")
    with pytest.raises(InvalidArchive, match="not valid JSON"):
        media_type_of(b"<html>", "text/html", "m")


def test_verify_manifest_digest() -> None:
    assert verify_manifest(b"{}", sha256_digest(b"{}"), "m") == sha256_digest(b"{}")
    with pytest.raises(CorruptBlob, match="nothing was stored"):
        verify_manifest(b"{}", sha256_digest(b"[]"), "m")


def test_error_detail_reads_registry_errors() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"},{"code":"DENIED"}]}'
    assert error_detail(body) == "MANIFEST_UNKNOWN: manifest unknown; DENIED"
    assert error_detail(b"plain text") == "plain text"


# -- credentials ----------------------------------------------------------------------------------
def test_auth_file_round_trip_is_private(tmp_path: Path) -> None:
    auth = AuthFile(tmp_path / "auth.json")
    assert auth.get("reg.example:5000") is None
    auth.set("Reg.Example:5000", Credentials("alice", "s3cr:et"))
    mode = stat.S_IMODE(os.stat(tmp_path / "auth.json").st_mode)
    assert mode == 0o600
    got = auth.get("reg.example:5000")
    assert got is not None and (got.username, got.password) == ("alice", "s3cr:et")
    assert got.source == str(tmp_path / "auth.json")
    doc = json.loads((tmp_path / "auth.json").read_text())
    assert set(doc["auths"]) == {"reg.example:5000"}  # docker/podman's format
    assert auth.remove("reg.example:5000") and not auth.remove("reg.example:5000")
    assert auth.get("reg.example:5000") is None


def test_auth_file_damaged_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text("{not json")
    with pytest.raises(InvalidSpec, match="remove it and log in again"):
        AuthFile(path).get("h")
    path.write_text('{"auths": {"h": {"auth": "!!!"}}}')
    with pytest.raises(InvalidSpec, match="hpctl login h"):
        AuthFile(path).get("h")


def test_credentials_never_show_the_password() -> None:
    creds = parse_credentials("bob:hp_token:with:colons")
    assert creds.password == "hp_token:with:colons"
    assert "hp_token" not in repr(creds)
    assert creds.basic_header().startswith("Basic ")
    with pytest.raises(InvalidSpec, match="USER:PASSWORD"):
        parse_credentials("nocolon")
