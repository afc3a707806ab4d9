"""Staging: blobs of an import waiting in tmp until the whole import is verified.

Nothing reaches the blob store or the index until every blob of an import
has been read, hashed and checked; a failed import leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from engine.errors import InvalidArchive
from engine.images.blobs import BlobStore, StagedBlob
from engine.images.compression import ZSTD_HINT, Compression, decompressed, sniff_file
from engine.images.digest import Readable
from engine.images.oci import (
    GZIP_LAYER_TYPES,
    MT_LAYER_GZIP,
    MT_LAYER_TAR,
    TAR_LAYER_TYPES,
    ZSTD_LAYER_TYPES,
)
from engine.images.scan import scan_layer


@dataclass(frozen=True)
class StagedLayer:
    """A layer blob in staging with what the scan found."""

    blob: StagedBlob
    media_type: str
    diff_id: str
    uncompressed_size: int
    has_bin_sh: bool

    @property
    def digest(self) -> str:
        """The blob digest (of the stored, possibly compressed, bytes)."""
        return self.blob.digest


@dataclass
class StagedImage:
    """One image of an import, fully verified, ready to be committed."""

    config: StagedBlob
    manifest: StagedBlob
    manifest_media_type: str
    layers: list[StagedLayer]
    tags: list[str]
    created: str
    size: int
    diff_ids: tuple[str, ...] = field(default=())

    @property
    def image_id(self) -> str:
        """The config digest."""
        return self.config.digest


def layer_compression(media_type: str) -> Compression:
    """The compression a layer media type announces; raises InvalidArchive for zstd or unknown types."""
    if media_type in GZIP_LAYER_TYPES:
        return Compression.GZIP
    if media_type in TAR_LAYER_TYPES:
        return Compression.NONE
    if media_type in ZSTD_LAYER_TYPES:
        raise InvalidArchive(ZSTD_HINT)
    raise InvalidArchive(f"unsupported layer media type {media_type!r} (expected a tar or tar+gzip layer)")


class Staging:
    """Temporary blobs of one import; removes whatever was not committed on exit."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._staged: list[StagedBlob] = []
        self._committed: set[Path] = set()

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Delete every staged file that was not committed."""
        for s in self._staged:
            if s.path not in self._committed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(s.path)
        self._staged.clear()

    def commit(self, staged: StagedBlob) -> None:
        """Move ``staged`` into the blob store (once, even if listed by several images)."""
        if staged.path in self._committed:
            return
        self.blobs.commit(staged)
        self._committed.add(staged.path)

    def stage_stream(self, stream: Readable | IO[bytes], expected: str | None = None) -> StagedBlob:
        """Copy ``stream`` into a staged blob; raises CorruptBlob if it does not hash to ``expected``."""
        with self.blobs.writer() as w:
            w.copy_from(stream)
            staged = w.finish(expected)
        self._staged.append(staged)
        return staged

    def stage_bytes(self, data: bytes, expected: str | None = None) -> StagedBlob:
        """Stage ``data`` as a blob; raises CorruptBlob if it does not hash to ``expected``."""
        with self.blobs.writer() as w:
            w.write(data)
            staged = w.finish(expected)
        self._staged.append(staged)
        return staged

    def stage_layer(
        self,
        stream: Readable | IO[bytes],
        what: str,
        *,
        expected: str | None = None,
        media_type: str | None = None,
    ) -> StagedLayer:
        """Stage a layer blob and scan it.

        With ``media_type`` (OCI manifests) the blob is kept byte for byte and
        must match the announced compression. Without it (docker-save, rootfs
        tars) the compression is detected: plain and gzip tars are kept as
        they are, bzip2 and xz are stored decompressed. zstd raises
        InvalidArchive; a digest mismatch raises CorruptBlob; a hostile member
        raises UnsafeArchive.
        """
        announced = layer_compression(media_type) if media_type is not None else None
        blob = self.stage_stream(stream, expected)
        return self.scan_staged(blob, what, media_type=media_type, announced=announced)

    def adopt(self, staged: StagedBlob) -> StagedBlob:
        """Take ownership of a blob staged by a :class:`BlobWriter` (deleted on exit unless committed)."""
        self._staged.append(staged)
        return staged

    def scan_staged(
        self,
        blob: StagedBlob,
        what: str,
        *,
        media_type: str | None = None,
        announced: Compression | None = None,
    ) -> StagedLayer:
        """Scan a staged layer blob (see :meth:`stage_layer`); returns the :class:`StagedLayer`."""
        actual = sniff_file(blob.path)
        if actual is Compression.ZSTD:
            raise InvalidArchive(f"{what}: {ZSTD_HINT}")
        if announced is not None:
            if actual is not announced:
                raise InvalidArchive(
                    f"{what} is announced as {media_type} but its content is {actual.value}-compressed"
                )
        elif actual in (Compression.BZIP2, Compression.XZ):
            with open(blob.path, "rb") as f:
                blob = self.stage_stream(decompressed(f, actual))
            actual = Compression.NONE
        if media_type is None:
            media_type = MT_LAYER_GZIP if actual is Compression.GZIP else MT_LAYER_TAR
        with open(blob.path, "rb") as f:
            scan = scan_layer(f, actual, what)
        return StagedLayer(
            blob=blob,
            media_type=media_type,
            diff_id=scan.diff_id,
            uncompressed_size=scan.size,
            has_bin_sh=scan.has_bin_sh,
        )
