"""sha256 digests and file-like wrappers that hash (and verify) what flows through them."""

from __future__ import annotations

import hashlib
from typing import IO, Protocol

from engine.errors import CorruptBlob, InvalidSpec
from engine.images.reference import DIGEST_RE

CHUNK = 1 << 20


class Readable(Protocol):
    """Anything with a ``read(n)`` returning bytes."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes (all when negative); b"" at the end."""
        ...


def sha256_digest(data: bytes) -> str:
    """The digest ``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; raises InvalidSpec for anything else."""
    check_digest(digest)
    return digest.split(":", 1)[1]


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 hex>``, else raise InvalidSpec."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidSpec(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest


class HashingReader:
    """Read from ``source`` and keep a running sha256 and byte count of what was read."""

    def __init__(self, source: Readable | IO[bytes]) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes (all when negative), hashing them."""
        data = self._source.read(size)
        self._hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) everything left in the source."""
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the bytes read so far."""
        return "sha256:" + self._hash.hexdigest()


class VerifyingReader(HashingReader):
    """A :class:`HashingReader` that checks the expected digest when the source ends.

    Reading the last byte (or calling :meth:`finish`) raises CorruptBlob if the
    content does not hash to ``expected`` (a truncated or altered blob).
    """

    def __init__(self, source: Readable | IO[bytes], expected: str, what: str = "blob") -> None:
        super().__init__(source)
        self.expected = expected
        self._what = what
        self._checked = False

    def read(self, size: int = -1, /) -> bytes:
        """Read like the source; at end of data verify the digest (raises CorruptBlob)."""
        data = super().read(size)
        if not data and size != 0:
            self._check()
        return data

    def finish(self) -> None:
        """Read the rest of the source and verify the digest; raises CorruptBlob on mismatch."""
        self.drain()
        self._check()

    def _check(self) -> None:
        if self._checked:
            return
        if self.digest != self.expected:
            raise CorruptBlob(
                f"{self._what} {self.expected} is corrupt: its content hashes to {self.digest} "
                f"({self.count} bytes read); re-import the image"
            )
        self._checked = True
