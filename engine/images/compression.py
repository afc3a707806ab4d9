"""Recognise and undo the compression of layer and archive streams."""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
from enum import Enum
from pathlib import Path
from typing import IO, cast

from engine.errors import InvalidArchive
from engine.images.bounded import CHUNK, ArchiveBomb, BoundedReader, CountingReader, DecompressionLimits
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


def decompressed(
    stream: Readable | IO[bytes],
    compression: Compression,
    *,
    limits: DecompressionLimits | None = None,
    what: str = "the archive",
) -> Readable:
    """A reader of the uncompressed content of ``stream``; raises InvalidArchive for zstd.

    A compressed stream is read within ``limits`` (default: from the environment, see
    :mod:`engine.images.bounded`); reading past them raises ArchiveBomb naming ``what``.
    """
    if compression is Compression.NONE:
        return stream
    source = CountingReader(stream)
    output: Readable
    if compression is Compression.GZIP:
        output = gzip.GzipFile(fileobj=cast(IO[bytes], source), mode="rb")
    elif compression is Compression.BZIP2:
        output = bz2.BZ2File(cast(IO[bytes], source), mode="rb")
    elif compression is Compression.XZ:
        output = lzma.LZMAFile(cast(IO[bytes], source), mode="rb")  # noqa: SIM115 - the caller reads it
    else:
        raise InvalidArchive(ZSTD_HINT)
    return BoundedReader(output, source, limits or DecompressionLimits.from_env(), what)


def check_archive(path: Path, limits: DecompressionLimits | None = None) -> int:
    """Read the image archive at ``path`` through to its end; return its unpacked size.

    Decompresses the archive (when compressed) and every compressed member of it (layers)
    within ``limits``, writing nothing. Raises ArchiveBomb past a limit; a file that is not
    a (compressed) tar is left to the importer to refuse.
    """
    limits = limits or DecompressionLimits.from_env()
    total = 0
    with open(path, "rb") as f:
        kind = sniff(f.read(6))
        f.seek(0)
        if kind is Compression.ZSTD:
            return 0  # the importer refuses it with its hint
        outer = cast(IO[bytes], decompressed(f, kind, limits=limits))
        try:
            with tarfile.open(fileobj=outer, mode="r|") as tar:
                for member in tar:
                    data = tar.extractfile(member) if member.isfile() else None
                    if data is None:
                        continue
                    head = data.read(6)
                    inner = sniff(head)
                    if inner is Compression.ZSTD:
                        continue  # the importer refuses it with its hint
                    reader = decompressed(_Prefixed(head, data), inner, limits=limits, what=member.name)
                    while chunk := reader.read(CHUNK):
                        total += len(chunk)
                        if total > limits.max_unpacked:
                            raise ArchiveBomb(
                                f"the archive unpacks to more than {limits.max_unpacked} bytes "
                                "(HOSTPANEL_MAX_UNPACKED_BYTES); refusing it: split it or make it smaller"
                            )
        except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError):
            return total  # not a tar (or a damaged one): the importer says what is wrong
    return total


class _Prefixed:
    """``head`` followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head = head
        self.stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if not self.head:
            return self.stream.read(size)
        if size is None or size < 0:
            data, self.head = self.head + self.stream.read(), b""
        else:
            data, self.head = self.head[:size], self.head[size:]
        return data
