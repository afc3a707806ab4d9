"""Recognise and undo the compression of layer and archive streams."""

from __future__ import annotations

import bz2
import gzip
import lzma
from enum import Enum
from pathlib import Path
from typing import IO, cast

from engine.errors import InvalidArchive
from engine.images.digest import Readable

ZSTD_HINT = (
    "zstd layers are not supported; re-save with gzip (e.g. `podman save --format oci-archive` or "
    "`skopeo copy --dest-compress-format gzip`)"
)


class Compression(Enum):
    """How a stream is compressed."""

    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


def sniff(head: bytes) -> Compression:
    """The compression of a stream starting with ``head`` (at least 6 bytes when available)."""
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Compression.ZSTD
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    if head.startswith(b"BZh"):
        return Compression.BZIP2
    return Compression.NONE


def sniff_file(path: Path) -> Compression:
    """The compression of the file at ``path``."""
    with open(path, "rb") as f:
        return sniff(f.read(6))


def decompressed(stream: Readable | IO[bytes], compression: Compression) -> Readable:
    """A reader of the uncompressed content of ``stream``; raises InvalidArchive for zstd."""
    if compression is Compression.NONE:
        return stream
    if compression is Compression.GZIP:
        return gzip.GzipFile(fileobj=cast(IO[bytes], stream), mode="rb")
    if compression is Compression.BZIP2:
        return bz2.BZ2File(cast(IO[bytes], stream), mode="rb")
    if compression is Compression.XZ:
        return lzma.LZMAFile(cast(IO[bytes], stream), mode="rb")
    raise InvalidArchive(ZSTD_HINT)
