"""Manifests as registries serve them: Accept headers, digests, and platform selection.

Parsing reuses engine.images.oci (image manifests) and the platform choice of
engine.images.archive (an index or manifest list: linux on this host's
architecture, then linux/amd64).
"""

from __future__ import annotations

from engine.errors import CorruptBlob, InvalidArchive
from engine.images.archive import pick_platform
from engine.images.digest import sha256_digest
from engine.images.oci import INDEX_TYPES, MANIFEST_TYPES, parse_json_object

ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)


def media_type_of(data: bytes, content_type: str, what: str) -> str:
    """The manifest's media type: its ``mediaType`` field, else the response's Content-Type."""
    doc = parse_json_object(data, what)
    mt = doc.get("mediaType")
    if not isinstance(mt, str) or not mt:
        mt = content_type.split(";")[0].strip()
    if mt in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise InvalidArchive(
            f"{what} is a Docker schema 1 manifest, which is not supported; re-push the image"
        )
    if mt in MANIFEST_TYPES or mt in INDEX_TYPES:
        return mt
    if not mt and "manifests" in doc:
        return INDEX_TYPES[0]
    if not mt and "layers" in doc:
        return MANIFEST_TYPES[0]
    raise InvalidArchive(f"{what} has unsupported media type {mt!r}")


def is_index(media_type: str) -> bool:
    """Whether ``media_type`` is an image index / manifest list."""
    return media_type in INDEX_TYPES


def select_platform(index_bytes: bytes, what: str) -> str:
    """The manifest digest to pull from an index: linux/<host arch>, else linux/amd64.

    Raises InvalidArchive (listing the platforms it has) when none fits.
    """
    picked = pick_platform(parse_json_object(index_bytes, what), what)
    digest = picked.get("digest")
    if not isinstance(digest, str):
        raise InvalidArchive(f"{what}: the chosen platform entry has no digest")
    return digest


def verify_manifest(data: bytes, expected: str | None, what: str) -> str:
    """The digest of ``data``; raises CorruptBlob when it differs from ``expected`` (if given)."""
    digest = sha256_digest(data)
    if expected and expected != digest:
        raise CorruptBlob(
            f"{what} is corrupt: its content hashes to {digest}, not {expected}; nothing was stored"
        )
    return digest
