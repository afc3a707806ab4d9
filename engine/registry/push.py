"""Push an image from the local store to a registry.

Blobs the registry already has (HEAD) are skipped; a blob the client pulled
from another repository of the same registry is mounted (no bytes sent) when
the registry allows it. Small blobs go up in one request (POST then PUT),
large ones in chunks (POST, PATCH..., PUT). The manifest goes last, by tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from urllib.parse import urlencode, urljoin

from engine.errors import CorruptBlob, InvalidReference
from engine.images.digest import digest_hex
from engine.images.oci import parse_manifest
from engine.images.store import ImageStore
from engine.registry.client import BLOCK, RegistryClient, Response, file_blocks
from engine.registry.credentials import AuthFile, Credentials
from engine.registry.errors import RegistryError
from engine.registry.progress import BlobProgress, ProgressCallback, Tracker, TransferReport
from engine.registry.remote import RemoteRef, parse_remote
from engine.registry.sources import BlobSources

MONOLITHIC_MAX = 32 << 20
"""Blobs up to this size are uploaded in one PUT; larger ones in chunks."""
CHUNK_SIZE = 32 << 20


def push(
    store: ImageStore,
    local_ref: str,
    remote_ref: str | RemoteRef | None = None,
    *,
    credentials: Credentials | None = None,
    insecure: bool = False,
    progress: ProgressCallback | None = None,
    auth_file: AuthFile | None = None,
    sources: BlobSources | None = None,
    chunk_size: int = CHUNK_SIZE,
    monolithic_max: int = MONOLITHIC_MAX,
) -> TransferReport:
    """Push the image ``local_ref`` to ``remote_ref`` (default: ``local_ref``, which must name a registry).

    Blobs that ``sources`` knows in another repository of the same registry
    are mounted from there when the registry allows it. Raises ImageNotFound
    (no such local image), InvalidReference (no registry in the name, or a
    digest instead of a tag), AuthenticationFailed, RegistryUnreachable,
    CorruptBlob (a local blob is damaged), RegistryError.
    """
    image = store.resolve(local_ref)
    remote = parse_remote(remote_ref or local_ref) if not isinstance(remote_ref, RemoteRef) else remote_ref
    if remote.digest is not None and remote.tag is None:
        raise InvalidReference(f"push to a tag, not a digest: {remote}")
    if credentials is None and auth_file is not None:
        credentials = auth_file.get(remote.registry)
    client = RegistryClient(remote.endpoint, credentials, insecure=insecure)
    manifest_bytes = store.blobs.read_bytes(image.digest)
    manifest = parse_manifest(manifest_bytes, f"manifest of {local_ref}")
    report = TransferReport(reference=str(remote), manifest_digest=image.digest, image_id=image.id)
    tracker = Tracker(report, progress)
    uploader = _Uploader(store, client, remote, tracker, chunk_size, monolithic_max)
    blobs = [(manifest.config_digest, manifest.config_size, "config")]
    blobs += [(la.digest, la.size, "layer") for la in manifest.layers]
    mount_from = sources.lookup(remote.registry, [d for d, _, _ in blobs]) if sources is not None else {}
    for digest, size, kind in dict.fromkeys(blobs):
        uploader.blob(digest, size, kind, mount_from.get(digest))
    tag = remote.tag or "latest"
    response = client.request(
        "PUT",
        f"/v2/{remote.repository}/manifests/{tag}",
        scopes=[uploader.scope],
        headers={"Content-Type": manifest.media_type},
        body=manifest_bytes,
    )
    with client.expect(response, [200, 201], f"PUT manifest {tag}") as r:
        r.read_limited(1 << 16)
        answered = r.header("Docker-Content-Digest").strip()
    if answered and answered != image.digest:
        raise RegistryError(
            f"registry {remote.registry} stored the manifest under {answered}, not {image.digest}"
        )
    if sources is not None:
        sources.record(remote.registry, remote.repository, [d for d, _, _ in blobs])
    return report


class _Uploader:
    def __init__(
        self,
        store: ImageStore,
        client: RegistryClient,
        remote: RemoteRef,
        tracker: Tracker,
        chunk_size: int,
        monolithic_max: int,
    ) -> None:
        self.store = store
        self.client = client
        self.remote = remote
        self.tracker = tracker
        self.chunk_size = max(chunk_size, BLOCK)
        self.monolithic_max = monolithic_max
        self.scope = f"repository:{remote.repository}:pull,push"
        self.base = f"/v2/{remote.repository}/blobs"

    def blob(self, digest: str, size: int, kind: str, mount_from: str | None) -> None:
        path = self.store.blobs.path(digest)
        if not path.is_file():
            raise CorruptBlob(f"blob {digest} is missing from the store; re-import the image")
        response = self.client.request("HEAD", f"{self.base}/{digest}", scopes=[self.scope])
        with response:
            exists = response.status == 200
            if response.status not in (200, 404):
                self.client.expect(response, [200, 404], f"HEAD blob {digest}")
        if exists:
            self.tracker.skipped(digest, size, kind)
            return
        location = self._start(digest, mount_from)
        if location is None:
            self.tracker.mounted(digest, size, kind)
            return
        if size <= self.monolithic_max:
            self._finish(location, digest, path_range=(0, size))
        else:
            offset = 0
            while offset < size:
                length = min(self.chunk_size, size - offset)
                location = self._patch(location, digest, offset, length, size)
                offset += length
            self._finish(location, digest, path_range=None)
        self.tracker.completed(digest, size, kind)

    def _start(self, digest: str, mount_from: str | None) -> str | None:
        """Open an upload session (its Location), or None when a mount made the blob appear."""
        path = f"{self.base}/uploads/"
        scopes = [self.scope]
        if mount_from and mount_from != self.remote.repository:
            path += "?" + urlencode({"mount": digest, "from": mount_from})
            scopes.append(f"repository:{mount_from}:pull")
        response = self.client.request("POST", path, scopes=scopes)
        with self.client.expect(response, [201, 202], f"start upload of {digest}") as r:
            r.read_limited(1 << 16)
            location = r.header("Location")
        if r.status == 201:
            return None
        if not location:
            raise RegistryError(f"registry {self.remote.registry} opened an upload without a Location")
        return _absolute(r, location)

    def _blocks(self, digest: str, offset: int, length: int) -> Iterator[bytes]:
        with open(self.store.blobs.path(digest), "rb") as f:
            f.seek(offset)
            yield from file_blocks(f, length)

    def _patch(self, location: str, digest: str, offset: int, length: int, size: int) -> str:
        def body() -> Iterator[bytes]:
            done = offset
            for block in self._blocks(digest, offset, length):
                done += len(block)
                self.tracker.emit(BlobProgress(digest, "transferring", done, size))
                yield block

        response = self.client.request(
            "PATCH",
            location,
            scopes=[self.scope],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + length - 1}",
            },
            body=body,
            length=length,
        )
        with self.client.expect(
            response, [202], f"upload chunk {offset}-{offset + length - 1} of {digest}"
        ) as r:
            r.read_limited(1 << 16)
            return _absolute(r, r.header("Location") or location)

    def _finish(self, location: str, digest: str, path_range: tuple[int, int] | None) -> None:
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}{urlencode({'digest': digest})}"
        if path_range is None:
            response = self.client.request("PUT", url, scopes=[self.scope])
        else:
            start, length = path_range
            checker = _Checked(digest)

            def body() -> Iterator[bytes]:
                checker.reset()
                for block in self._blocks(digest, start, length):
                    checker.update(block)
                    self.tracker.emit(BlobProgress(digest, "transferring", checker.count, length))
                    yield block

            response = self.client.request(
                "PUT",
                url,
                scopes=[self.scope],
                headers={"Content-Type": "application/octet-stream"},
                body=body,
                length=length,
            )
            if response.status == 400 and not checker.matches():
                response.close()
                raise CorruptBlob(
                    f"blob {digest} is corrupt in the local store (it hashes to {checker.digest}); "
                    "re-import or re-pull the image"
                )
        with self.client.expect(response, [201, 204], f"finish upload of {digest}") as r:
            r.read_limited(1 << 16)


class _Checked:
    """A running sha256 of what was sent."""

    def __init__(self, expected: str) -> None:
        self.expected_hex = digest_hex(expected)
        self.reset()

    def reset(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def update(self, block: bytes) -> None:
        self._hash.update(block)
        self.count += len(block)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def matches(self) -> bool:
        return self._hash.hexdigest() == self.expected_hex


def _absolute(response: Response, location: str) -> str:
    return urljoin(response.url, location)
