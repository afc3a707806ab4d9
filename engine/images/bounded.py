"""Bounded decompression: archive bombs are refused before they fill the disk.

Every compressed stream the engine reads (uploaded archives, layers, build contexts) goes
through :class:`BoundedReader` (see ``compression.decompressed``), which counts the bytes it
consumed and the bytes it produced and raises :class:`ArchiveBomb` once the output passes the
largest unpacked size, or, past a floor, the largest compression ratio.
``compression.check_archive`` reads a whole image archive this way without writing anything,
so an upload can be refused before it is stored or staged.

The limits come from the environment: ``HOSTPANEL_MAX_UNPACKED_BYTES`` (16 GiB) and
``HOSTPANEL_MAX_COMPRESSION_RATIO`` (100); the ratio is not checked below 64 MiB of output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

from engine.errors import InvalidArchive
from engine.images.digest import Readable

CHUNK = 1024 * 1024
GiB = 1024**3
MiB = 1024**2


class ArchiveBomb(InvalidArchive):
    """A compressed stream that unpacks to more than the limits allow."""


@dataclass(frozen=True)
class DecompressionLimits:
    """How far a compressed stream may unpack: in bytes, and as output/input ratio above ``ratio_floor``."""

    max_unpacked: int = 16 * GiB
    max_ratio: int = 100
    ratio_floor: int = 64 * MiB

    @classmethod
    def from_env(cls) -> DecompressionLimits:
        """The limits set by ``HOSTPANEL_MAX_UNPACKED_BYTES`` / ``HOSTPANEL_MAX_COMPRESSION_RATIO``."""
        default = cls()
        try:
            return cls(
                max_unpacked=int(os.environ.get("HOSTPANEL_MAX_UNPACKED_BYTES", default.max_unpacked)),
                max_ratio=int(os.environ.get("HOSTPANEL_MAX_COMPRESSION_RATIO", default.max_ratio)),
            )
        except ValueError:
            raise InvalidArchive(
                "HOSTPANEL_MAX_UNPACKED_BYTES and HOSTPANEL_MAX_COMPRESSION_RATIO must be whole numbers"
            ) from None


class CountingReader:
    """A reader that counts the bytes read through it."""

    def __init__(self, stream: Readable | IO[bytes]) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        """Read from the wrapped stream, counting."""
        data = self.stream.read(size)
        self.count += len(data)
        return data


class BoundedReader:
    """The output of a decompressor, checked against ``limits`` as it is read.

    ``source`` counts the compressed bytes the decompressor consumed. Raises
    ArchiveBomb (naming ``what``) once the output passes a limit.
    """

    def __init__(
        self, output: Readable, source: CountingReader, limits: DecompressionLimits, what: str = "archive"
    ) -> None:
        self.output = output
        self.source = source
        self.limits = limits
        self.what = what
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        """Read decompressed bytes (in chunks when ``size`` is negative); raises ArchiveBomb past a limit."""
        if size is None or size < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self.output.read(size)
        self.count += len(data)
        self._check()
        return data

    def _check(self) -> None:
        limits = self.limits
        if self.count > limits.max_unpacked:
            raise ArchiveBomb(
                f"{self.what} unpacks to more than {limits.max_unpacked} bytes "
                "(HOSTPANEL_MAX_UNPACKED_BYTES); refusing it: split it or make it smaller"
            )
        if self.count > limits.ratio_floor and self.count > limits.max_ratio * max(self.source.count, 1):
            raise ArchiveBomb(
                f"{self.what} unpacks to more than {limits.max_ratio} times its compressed size "
                "(HOSTPANEL_MAX_COMPRESSION_RATIO); refusing it as a decompression bomb"
            )

    def close(self) -> None:
        """Close the decompressor."""
        close = getattr(self.output, "close", None)
        if close is not None:
            close()
