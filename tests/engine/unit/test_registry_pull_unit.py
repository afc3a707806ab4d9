"""pull() against a scripted registry: index platform choice, broken transfers, and nothing left behind.

The real-registry tests (distribution, the panel's registry) are in
tests/engine/privileged/test_registry_distribution.py and tests/hostpanel/registry_client/.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.errors import CorruptBlob, ImageNotFound, InvalidArchive, InvalidReference
from engine.images.oci import MT_CONFIG, MT_INDEX, MT_LAYER_TAR, MT_MANIFEST, canonical_json, descriptor
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from engine.registry import RegistryUnreachable, pull
from engine.registry.remote import Endpoint, RemoteRef
from tests.engine.conftest import serving


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(text: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return buf.getvalue()


@dataclass
class _Image:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # ref -> (media type, bytes)

    def add(self, arch: str, text: bytes) -> tuple[str, str, str]:
        layer = _layer(text)
        config = canonical_json(
            {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}
        )
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": descriptor(MT_CONFIG, _digest(config), len(config)),
                "layers": [descriptor(MT_LAYER_TAR, _digest(layer), len(layer))],
            }
        )
        self.blobs[_digest(layer)] = layer
        self.blobs[_digest(config)] = config
        self.manifests[_digest(manifest)] = (MT_MANIFEST, manifest)
        return _digest(manifest), _digest(config), _digest(layer)


class _Server(ThreadingHTTPServer):
    image: _Image
    truncate: set[str]
    served: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path
        self.server.served.append(path)
        _, _, rest = path.partition("/v2/team/app/")
        kind, _, ref = rest.partition("/")
        if kind == "manifests" and ref in self.server.image.manifests:
            mt, body = self.server.image.manifests[ref]
            return self._send(200, body, mt)
        if kind == "blobs" and ref in self.server.image.blobs:
            body = self.server.image.blobs[ref]
            if ref in self.server.truncate:  # announce everything, send half, hang up
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return None
            return self._send(200, body, "application/octet-stream")
        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', "")

    def _send(self, status: int, body: bytes, media_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.image, srv.truncate, srv.served = _Image(), set(), []
    with serving(srv):
        yield srv


@pytest.fixture()
def store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ImageStore(paths)


def _remote(srv: _Server, ref: str) -> RemoteRef:
    tag, digest = (None, ref) if ref.startswith("sha256:") else (ref, None)
    return RemoteRef(Endpoint(f"127.0.0.1:{srv.server_address[1]}", "http"), "team/app", tag, digest)


def _nothing_left(store: ImageStore) -> None:
    assert store.list() == []
    assert store.blobs.digests() == set()
    leftovers = [p.name for p in store.paths.tmp.iterdir()] if store.paths.tmp.is_dir() else []
    assert leftovers == []


def test_index_pull_picks_linux_amd64_and_tags_the_image(server: _Server, store: ImageStore) -> None:
    arm = server.image.add("arm64", b"arm\n")
    amd = server.image.add("amd64", b"amd\n")
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {**descriptor(MT_MANIFEST, d, len(server.image.manifests[d][1])), "platform": p}
                for d, p in (
                    (arm[0], {"os": "linux", "architecture": "arm64"}),
                    (amd[0], {"os": "linux", "architecture": "amd64"}),
                )
            ],
        }
    )
    server.image.manifests["1"] = (MT_INDEX, index)
    report = pull(store, _remote(server, "1"), tag_as="team/app:1")
    assert report.manifest_digest == amd[0] and report.image_id == amd[1]
    assert report.transferred == [amd[1], amd[2]]
    assert store.resolve("team/app:1").id == amd[1]
    assert not any(arm[2] in p for p in server.served)  # the other platform's layer was never fetched


def test_pull_by_digest_keeps_the_image_untagged(server: _Server, store: ImageStore) -> None:
    manifest, config, _ = server.image.add("amd64", b"pinned\n")
    remote = _remote(server, manifest)
    assert pull(store, remote).image_id == config
    (image,) = store.list()
    assert image.repo_tags == () and image.digest == manifest
    assert store.resolve(f"{remote.registry}/team/app@{manifest}").id == config


def test_truncated_download_stores_nothing(server: _Server, store: ImageStore) -> None:
    manifest, _config, layer = server.image.add("amd64", b"x" * 100_000)
    server.truncate.add(layer)
    with pytest.raises(RegistryUnreachable, match=r"broke while downloading .* nothing was stored"):
        pull(store, _remote(server, manifest), tag_as="team/app:1")
    _nothing_left(store)


def test_manifest_not_matching_its_digest_is_refused(server: _Server, store: ImageStore) -> None:
    manifest, _, _ = server.image.add("amd64", b"y")
    mt, body = server.image.manifests[manifest]
    server.image.manifests[manifest] = (mt, body.replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    with pytest.raises(CorruptBlob, match=rf"hashes to .*not {manifest}; nothing was stored"):
        pull(store, _remote(server, manifest), tag_as="team/app:1")
    _nothing_left(store)


def test_layer_announced_as_gzip_but_plain_is_refused(server: _Server, store: ImageStore) -> None:
    manifest, _, _ = server.image.add("amd64", b"z")
    mt, body = server.image.manifests[manifest]
    doc = json.loads(body)
    doc["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    server.image.manifests["bad"] = (mt, canonical_json(doc))
    with pytest.raises(InvalidArchive, match=r"announced as .*gzip"):
        pull(store, _remote(server, "bad"), tag_as="team/app:1")
    _nothing_left(store)


def test_a_tenant_pull_names_only_its_namespace(server: _Server, store: ImageStore) -> None:
    """A tenant's pull cannot land on a base or another tenant's name; it is refused before any download."""
    manifest, config, _ = server.image.add("amd64", b"tenant\n")
    for name in ("busybox:latest", "beta/app:1", "team/app:1"):
        with pytest.raises(InvalidReference, match="tenant 'alpha' cannot name an image"):
            pull(store, _remote(server, manifest), tag_as=name, tenant="alpha")
    assert server.served == []
    _nothing_left(store)
    assert pull(store, _remote(server, manifest), tag_as="alpha/app:1", tenant="alpha").image_id == config
    assert store.resolve("alpha/app:1", tenant="alpha").id == config
    with pytest.raises(ImageNotFound):
        store.resolve("alpha/app:1", tenant="beta")
