"""Helpers for the registry client tests (no tests here): real registries, skopeo, OCI layouts.

- :func:`distribution_registry`: the CNCF distribution registry (Debian's
  docker-registry) on a random port, plain HTTP, optionally with htpasswd auth.
- :func:`skopeo`: the independent client the tests cross-check against.
- :func:`write_layout`: an OCI image layout holding an image made of an existing
  image's layers plus one new layer, for `skopeo copy` into a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.images.model import Image
from engine.images.oci import (
    ANNOTATION_REF_NAME,
    MT_CONFIG,
    MT_INDEX,
    MT_LAYER_TAR,
    canonical_json,
    descriptor,
    parse_manifest,
)
from engine.images.store import ImageStore
from tests.stack import free_port, stop_process


def require_tool(name: str) -> str:
    """The path of ``name``; skip when it is not installed (make install installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (engine/host/packages.py lists it; run make install)")
    return path


@dataclass(frozen=True)
class Distribution:
    """A running distribution registry."""

    host: str
    storage: Path

    def blob_data(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes on disk."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


@contextmanager
def distribution_registry(users: dict[str, str] | None = None) -> Iterator[Distribution]:
    """Run docker-registry on 127.0.0.1:<random port> with storage in a temp dir (basic auth with users)."""
    binary = require_tool("docker-registry")
    work = Path(tempfile.mkdtemp(prefix="hpreg-dist-"))
    port = free_port()
    auth = ""
    if users:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # bcrypt through libcrypt: the only hash docker-registry's htpasswd accepts

        lines = [f"{u}:{crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH))}" for u, p in users.items()]
        (work / "htpasswd").write_text("\n".join(lines) + "\n")
        auth = f"auth: {{htpasswd: {{realm: test, path: {work / 'htpasswd'}}}}}\n"
    (work / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n" + auth
    )
    log = open(work / "log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "serve", str(work / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # 401 with auth: it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start: {(work / 'log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield Distribution(f"127.0.0.1:{port}", work / "data")
    finally:
        stop_process(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def skopeo(*args: str) -> str:
    """Run skopeo (TLS verification off: the test registries speak plain HTTP); return stdout."""
    binary = require_tool("skopeo")
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


def _tar_with(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class Layout:
    """An OCI layout written by :func:`write_layout`."""

    path: Path
    ref: str
    manifest_digest: str
    config_digest: str
    base_layers: tuple[str, ...]
    new_layer: str


def _put(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


def write_layout(
    dest: Path, store: ImageStore, base: Image, files: dict[str, bytes], cmd: list[str], ref: str = "app"
) -> Layout:
    """An OCI layout at ``dest`` with ``base``'s layers plus one layer holding ``files``, tagged ``ref``."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    base_manifest = parse_manifest(store.blobs.read_bytes(base.digest))
    layers = []
    for la in base_manifest.layers:
        shutil.copyfile(store.blobs.path(la.digest), blobs / la.digest.split(":")[1])
        layers.append(descriptor(la.media_type, la.digest, la.size))
    layer_bytes = _tar_with(files)
    new_digest, new_size = _put(blobs, layer_bytes)
    layers.append(descriptor(MT_LAYER_TAR, new_digest, new_size))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [*base.layers, new_digest]},
    }
    config_digest, config_size = _put(blobs, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(MT_CONFIG, config_digest, config_size),
        "layers": layers,
    }
    manifest_digest, manifest_size = _put(blobs, canonical_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            descriptor(
                "application/vnd.oci.image.manifest.v1+json",
                manifest_digest,
                manifest_size,
                {ANNOTATION_REF_NAME: ref},
            )
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return Layout(
        dest, ref, manifest_digest, config_digest, tuple(la.digest for la in base_manifest.layers), new_digest
    )
