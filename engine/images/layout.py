"""The image index: ``<root>/images/index.json``, an OCI image-layout index.

One entry per (manifest, tag): the tag is the
``org.opencontainers.image.ref.name`` annotation holding the full name
(``busybox:latest``). An image without tags (dangling) keeps exactly one entry
without that annotation until it is pruned. HostPanel's own annotations cache
what `images` prints (id, created, size) so listing needs no blob reads, and
say who owns each name (see :mod:`engine.images.namespace`): the tenant that
owns a tag (none: the operator's base set) and the tenants that stored the
image untagged (a build's steps). Every mutation happens while holding the
index lock.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import InvalidArchive
from engine.fsutil import atomic_write_json, file_lock
from engine.images.oci import ANNOTATION_REF_NAME, MT_INDEX, MT_MANIFEST

ANNOTATION_ID = "io.hostpanel.image.id"
ANNOTATION_SIZE = "io.hostpanel.image.size"
ANNOTATION_CREATED = "io.hostpanel.image.created"
ANNOTATION_TENANT = "io.hostpanel.image.tenant"
ANNOTATION_HOLDERS = "io.hostpanel.image.holders"


@dataclass(frozen=True)
class IndexEntry:
    """One manifest descriptor of the index: a tag (``ref``) or a dangling image (``ref`` None)."""

    manifest_digest: str
    manifest_size: int
    image_id: str
    created: str
    size: int
    ref: str | None = None
    media_type: str = MT_MANIFEST
    tenant: str | None = None
    """The tenant that owns ``ref`` (None: the operator's base set)."""
    holders: tuple[str, ...] = ()
    """Tenants that stored the image and may read it by id without a tag of theirs."""

    def to_json(self) -> dict[str, Any]:
        """This entry as an OCI descriptor."""
        annotations = {
            ANNOTATION_ID: self.image_id,
            ANNOTATION_SIZE: str(self.size),
            ANNOTATION_CREATED: self.created,
        }
        if self.ref is not None:
            annotations[ANNOTATION_REF_NAME] = self.ref
        if self.ref is not None and self.tenant is not None:
            annotations[ANNOTATION_TENANT] = self.tenant
        if self.holders:
            annotations[ANNOTATION_HOLDERS] = ",".join(self.holders)
        return {
            "mediaType": self.media_type,
            "digest": self.manifest_digest,
            "size": self.manifest_size,
            "annotations": annotations,
        }

    @classmethod
    def from_json(cls, d: Any) -> IndexEntry:
        """Parse a descriptor written by :meth:`to_json`; raises InvalidArchive if malformed."""
        try:
            ann = d.get("annotations") or {}
            return cls(
                manifest_digest=str(d["digest"]),
                manifest_size=int(d["size"]),
                media_type=str(d.get("mediaType") or MT_MANIFEST),
                image_id=str(ann[ANNOTATION_ID]),
                size=int(ann.get(ANNOTATION_SIZE, 0)),
                created=str(ann.get(ANNOTATION_CREATED, "")),
                ref=ann.get(ANNOTATION_REF_NAME),
                tenant=ann.get(ANNOTATION_TENANT) if ann.get(ANNOTATION_REF_NAME) else None,
                holders=tuple(h for h in str(ann.get(ANNOTATION_HOLDERS, "")).split(",") if h),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArchive(f"image index entry {d!r} is malformed ({exc})") from None


@dataclass(frozen=True)
class ImageRecord:
    """An image as the index knows it: its entries folded together."""

    image_id: str
    manifest_digest: str
    manifest_size: int
    media_type: str
    created: str
    size: int
    tags: tuple[str, ...]
    owners: dict[str, str] = field(default_factory=dict)
    """The owning tenant of each tenant tag; a tag not in here is in the operator's base set."""
    holders: tuple[str, ...] = ()
    """Tenants that stored this image (they may read it by id, e.g. a build step's image)."""

    def with_tags(self, tags: tuple[str, ...], owners: dict[str, str]) -> ImageRecord:
        """This record with ``tags``, owned as ``owners`` says (entries for other tags dropped)."""
        return replace(self, tags=tags, owners={t: o for t, o in owners.items() if t in tags})


class ImageIndex:
    """Read and rewrite ``index.json`` under a file lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the index lock (exclusive, across processes) for the block. Not re-entrant."""
        with file_lock(self.lock_path):
            yield

    def load(self) -> list[IndexEntry]:
        """All entries (empty when the index does not exist yet); raises InvalidArchive if unreadable."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidArchive(
                f"image index {self.path} is not valid JSON ({exc}); restore or remove it"
            ) from None
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(manifests, list):
            raise InvalidArchive(f"image index {self.path} has no 'manifests' list; restore or remove it")
        return [IndexEntry.from_json(m) for m in manifests]

    def save(self, entries: Sequence[IndexEntry]) -> None:
        """Atomically replace the index with ``entries`` (call while holding the lock)."""
        atomic_write_json(
            self.path,
            {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [e.to_json() for e in entries]},
        )


def fold(entries: Sequence[IndexEntry]) -> list[ImageRecord]:
    """Group entries by manifest into :class:`ImageRecord` (first-seen order)."""
    records: dict[str, ImageRecord] = {}
    for e in entries:
        rec = records.get(e.manifest_digest)
        if rec is None:
            records[e.manifest_digest] = ImageRecord(
                image_id=e.image_id,
                manifest_digest=e.manifest_digest,
                manifest_size=e.manifest_size,
                media_type=e.media_type,
                created=e.created,
                size=e.size,
                tags=(e.ref,) if e.ref else (),
                owners={e.ref: e.tenant} if e.ref and e.tenant else {},
                holders=e.holders,
            )
        elif e.ref and e.ref not in rec.tags:
            owners = {**rec.owners, e.ref: e.tenant} if e.tenant else rec.owners
            records[e.manifest_digest] = replace(rec, tags=(*rec.tags, e.ref), owners=owners)
    return list(records.values())


def unfold(records: Sequence[ImageRecord]) -> list[IndexEntry]:
    """Entries for ``records``: one per tag, or one without a tag for a dangling image."""
    out: list[IndexEntry] = []
    for r in records:
        base = IndexEntry(
            manifest_digest=r.manifest_digest,
            manifest_size=r.manifest_size,
            image_id=r.image_id,
            created=r.created,
            size=r.size,
            media_type=r.media_type,
            holders=r.holders,
        )
        if r.tags:
            out.extend(replace(base, ref=t, tenant=r.owners.get(t)) for t in r.tags)
        else:
            out.append(base)
    return out
