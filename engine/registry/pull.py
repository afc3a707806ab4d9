"""Pull an image from a registry into the local image store.

Only blobs the store lacks are downloaded. Each download streams into the
store's staging area while it is hashed; nothing is committed (no blob, no
tag) until the manifest, the config and every layer are verified against
their digests and the config's diff_ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import uuid
from pathlib import Path

from engine.errors import CorruptBlob, InvalidArchive
from engine.images.archive import check_diff_ids, make_staged_image
from engine.images.blobs import TMP_PREFIX, StagedBlob
from engine.images.namespace import check_writable
from engine.images.oci import ParsedManifest, parse_config, parse_manifest
from engine.images.reference import normalize_tag
from engine.images.staging import StagedLayer, Staging, layer_compression
from engine.images.store import ImageStore
from engine.registry.client import BLOCK, RegistryClient, Response
from engine.registry.credentials import AuthFile, Credentials
from engine.registry.errors import RegistryUnreachable
from engine.registry.manifests import ACCEPT, is_index, media_type_of, select_platform, verify_manifest
from engine.registry.progress import BlobProgress, ProgressCallback, Tracker, TransferReport
from engine.registry.remote import RemoteRef, parse_remote
from engine.registry.sources import BlobSources

_CONFIG_LIMIT = 16 << 20


def pull(
    store: ImageStore,
    reference: str | RemoteRef,
    *,
    credentials: Credentials | None = None,
    insecure: bool = False,
    progress: ProgressCallback | None = None,
    auth_file: AuthFile | None = None,
    tag_as: str | None = None,
    tenant: str | None = None,
    sources: BlobSources | None = None,
) -> TransferReport:
    """Pull ``reference`` (``registry/repo:tag``, ``...@sha256:..`` or a RemoteRef) into ``store``.

    The image is tagged ``tag_as`` (default: the reference as written, e.g.
    ``localhost:5000/team/app:1``; none when pulled by digest alone). ``credentials`` default to the login in
    ``auth_file``; without either the pull is anonymous. For an index
    (multi-platform image) the linux/<host arch> manifest is chosen, then
    linux/amd64. ``progress`` is called for every blob step. ``sources``
    remembers where the blobs came from (for cross-repository mounts on push). The tag
    belongs to ``tenant`` and must be in its namespace (see engine.images.namespace); it is
    checked before anything is downloaded.

    Raises ImageNotFound (no such repository or tag), AuthenticationFailed,
    RegistryUnreachable, CorruptBlob (a digest mismatch: nothing is stored),
    InvalidArchive (unsupported manifest or layer), RegistryError.
    """
    remote = parse_remote(reference) if isinstance(reference, str) else reference
    # Pulled by digest alone: keep the image untagged (like docker), reachable as name@digest.
    by_digest_only = remote.digest is not None and remote.tag is None and tag_as is None
    tags = [] if by_digest_only else [normalize_tag(tag_as or remote.local_name)]
    check_writable([], tags, tenant)
    if credentials is None and auth_file is not None:
        credentials = auth_file.get(remote.registry)
    client = RegistryClient(remote.endpoint, credentials, insecure=insecure)
    report = TransferReport(reference=str(remote))
    tracker = Tracker(report, progress)
    scope = f"repository:{remote.repository}:pull"

    manifest_bytes, media_type = _fetch_manifest(client, remote, remote.manifest_ref, remote.digest, scope)
    if is_index(media_type):
        chosen = select_platform(manifest_bytes, f"image index of {remote}")
        manifest_bytes, media_type = _fetch_manifest(client, remote, chosen, chosen, scope)
        if is_index(media_type):
            raise InvalidArchive(
                f"{remote}: the index points at another index; nested indexes are not supported"
            )
    manifest = parse_manifest(manifest_bytes, f"manifest of {remote}")
    report.manifest_digest = verify_manifest(manifest_bytes, None, "")

    with Staging(store.blobs) as staging:
        links: list[Path] = []
        try:
            config_bytes = _config(store, client, remote, manifest, scope, tracker)
            config = parse_config(config_bytes, f"image config of {remote}")
            layers = [
                _layer(store, client, remote, manifest, i, scope, staging, tracker, links)
                for i in range(len(manifest.layers))
            ]
            check_diff_ids(layers, config, str(remote), [la.digest for la in manifest.layers])
            staged = make_staged_image(
                staging,
                config_bytes,
                config,
                layers,
                tags,
                manifest_bytes=manifest_bytes,
                manifest_media_type=manifest.media_type,
                config_expected=manifest.config_digest,
            )
            # the store's one commit path (index lock, name ownership, GC)
            image = store.commit_staged([staged], staging, tenant=tenant)[0]
        finally:
            for link in links:  # a rename onto the same inode leaves the link: remove it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
    report.image_id = image.id
    if sources is not None:
        sources.record(
            remote.registry,
            remote.repository,
            [manifest.config_digest, *(la.digest for la in manifest.layers)],
        )
    return report


def _fetch_manifest(
    client: RegistryClient, remote: RemoteRef, ref: str, expected: str | None, scope: str
) -> tuple[bytes, str]:
    what = f"manifest {ref} of {remote.registry}/{remote.repository}"
    response = client.request(
        "GET", f"/v2/{remote.repository}/manifests/{ref}", scopes=[scope], headers={"Accept": ACCEPT}
    )
    with client.expect(response, [200], f"GET {what}", str(remote)) as r:
        data = r.read_limited()
    verify_manifest(data, expected or _header_digest(r), what)
    return data, media_type_of(data, r.header("Content-Type"), what)


def _header_digest(response: Response) -> str | None:
    value = response.header("Docker-Content-Digest").strip()
    return value if value.startswith("sha256:") else None


def _config(
    store: ImageStore,
    client: RegistryClient,
    remote: RemoteRef,
    manifest: ParsedManifest,
    scope: str,
    tracker: Tracker,
) -> bytes:
    digest = manifest.config_digest
    if store.blobs.exists(digest):
        with contextlib.suppress(CorruptBlob):
            data = store.blobs.read_bytes(digest)
            tracker.skipped(digest, len(data), "config")
            return data
    response = client.request("GET", f"/v2/{remote.repository}/blobs/{digest}", scopes=[scope])
    with client.expect(response, [200], f"GET config {digest}", str(remote)) as r:
        data = r.read_limited(_CONFIG_LIMIT)
    verify_manifest(data, digest, f"image config {digest} from {remote.registry}")
    tracker.completed(digest, len(data), "config")
    return data


def _layer(
    store: ImageStore,
    client: RegistryClient,
    remote: RemoteRef,
    manifest: ParsedManifest,
    index: int,
    scope: str,
    staging: Staging,
    tracker: Tracker,
    links: list[Path],
) -> StagedLayer:
    layer = manifest.layers[index]
    what = f"{remote} layer {index} ({layer.digest})"
    announced = layer_compression(layer.media_type)
    local = _link_existing(store, layer.digest, links)
    if local is not None:
        staging.adopt(local)
        try:
            staged = staging.scan_staged(local, what, media_type=layer.media_type, announced=announced)
        except InvalidArchive:
            staged = None  # a damaged local copy: download it again
        if staged is not None:
            tracker.skipped(layer.digest, layer.size, "layer")
            return staged
    response = client.request("GET", f"/v2/{remote.repository}/blobs/{layer.digest}", scopes=[scope])
    with client.expect(response, [200], f"GET layer {layer.digest}", str(remote)) as r:
        stream = _ProgressStream(r, layer.digest, layer.size, tracker, remote.registry)
        try:
            staged = staging.stage_layer(stream, what, expected=layer.digest, media_type=layer.media_type)
        except CorruptBlob:
            raise CorruptBlob(
                f"{what} from registry {remote.registry} is corrupt: "
                f"its content hashes to {stream.digest_hint()} "
                f"({stream.done} bytes), not {layer.digest}; nothing was stored"
            ) from None
    tracker.completed(layer.digest, stream.done, "layer")
    return staged


def _link_existing(store: ImageStore, digest: str, links: list[Path]) -> StagedBlob | None:
    """Hard-link a blob the store has into its tmp dir (safe from a concurrent GC); None if absent."""
    source = store.blobs.path(digest)
    store.paths.tmp.mkdir(parents=True, exist_ok=True)
    link = store.paths.tmp / f"{TMP_PREFIX}pull-{uuid.uuid4().hex}"
    try:
        os.link(source, link)
    except FileNotFoundError:
        return None
    links.append(link)
    return StagedBlob(digest=digest, size=link.stat().st_size, path=link)


class _ProgressStream:
    """The body of a blob response, at most its announced size, reporting progress per block."""

    def __init__(self, response: Response, digest: str, size: int, tracker: Tracker, registry: str) -> None:
        self._response = response
        self._digest = digest
        self._size = size
        self._tracker = tracker
        self._registry = registry
        self.done = 0
        self._hash = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes (one block when negative)."""
        want = BLOCK if size is None or size < 0 else size
        want = min(want, self._size + 1 - self.done)  # one byte more than announced shows a lie
        if want <= 0:
            return b""
        try:
            data = self._response.raw.read(want)
        except (OSError, http.client.HTTPException) as exc:
            raise self._broken(str(exc)) from None
        if not data and self.done < self._size:
            raise self._broken("the registry closed the connection")
        self.done += len(data)
        self._hash.update(data)
        if data:
            self._tracker.emit(BlobProgress(self._digest, "transferring", self.done, self._size))
        return data

    def _broken(self, why: str) -> RegistryUnreachable:
        return RegistryUnreachable(
            f"the connection to registry {self._registry} broke while downloading {self._digest} "
            f"after {self.done} of {self._size} bytes ({why}); nothing was stored, try again"
        )

    def digest_hint(self) -> str:
        """The digest of what was received."""
        return "sha256:" + self._hash.hexdigest()
