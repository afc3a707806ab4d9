"""The content-addressed blob store: ``<root>/blobs/sha256/<hex>``.

Every blob is written to the engine's tmp directory first and renamed into
place once complete, so a half-written blob never appears under its digest.
Every read re-hashes the content: a truncated or altered blob raises
CorruptBlob naming the digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from engine.errors import CorruptBlob
from engine.images.digest import CHUNK, Readable, VerifyingReader, check_digest, digest_hex, sha256_digest

TMP_PREFIX = "hpimg-"


@dataclass(frozen=True)
class StagedBlob:
    """A complete blob waiting in the tmp directory to be committed under its digest."""

    digest: str
    size: int
    path: Path


class BlobWriter:
    """Write one blob to a private temporary file while hashing it.

    Use as a context manager: the temporary file is removed on exit unless
    :meth:`finish` returned a :class:`StagedBlob` that was committed (or the
    caller took ownership of it).
    """

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=TMP_PREFIX + "blob-")
        self.path = Path(name)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self._finished = False

    def write(self, data: bytes) -> None:
        """Append ``data`` to the blob."""
        assert self._file is not None, "blob writer already finished"
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def copy_from(self, source: Readable | IO[bytes]) -> None:
        """Append everything readable from ``source``."""
        while chunk := source.read(CHUNK):
            self.write(chunk)

    @property
    def digest(self) -> str:
        """Digest of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    def finish(self, expected: str | None = None) -> StagedBlob:
        """Flush and close the file; return the staged blob.

        Raises CorruptBlob (and deletes the file) if ``expected`` is given and
        the content does not hash to it.
        """
        assert self._file is not None, "blob writer already finished"
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if expected is not None and self.digest != expected:
            self.discard()
            raise CorruptBlob(
                f"blob {expected} is corrupt: its content hashes to {self.digest} ({self.size} bytes); "
                "re-import the image from an intact archive"
            )
        os.chmod(self.path, 0o644)
        self._finished = True
        return StagedBlob(digest=self.digest, size=self.size, path=self.path)

    def discard(self) -> None:
        """Close and delete the temporary file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or not self._finished:
            self.discard()


class BlobStore:
    """sha256 content-addressed blobs below ``root`` with staging in ``tmp_dir``."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (it may not exist). Raises InvalidSpec for a bad digest."""
        return self.root / digest_hex(digest)

    def exists(self, digest: str) -> bool:
        """Whether a blob file for ``digest`` is present (its content is not checked)."""
        return self.path(digest).is_file()

    def writer(self) -> BlobWriter:
        """A new :class:`BlobWriter` staging into the tmp directory."""
        return BlobWriter(self.tmp_dir)

    def commit(self, staged: StagedBlob) -> str:
        """Move a staged blob into the store under its digest and return the digest.

        An existing blob with the same digest is replaced atomically (identical
        content, stored once; this also repairs a corrupt copy).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, self.path(staged.digest))
        return staged.digest

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` and return its digest; raises CorruptBlob if it does not match ``expected``."""
        digest = sha256_digest(data)
        if expected is not None and expected != digest:
            raise CorruptBlob(
                f"blob {expected} is corrupt: its content hashes to {digest}; re-import the image"
            )
        with self.writer() as w:
            w.write(data)
            return self.commit(w.finish())

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[VerifyingReader]:
        """Open a blob for streaming; the reader raises CorruptBlob when it reaches a wrong end.

        Call ``reader.finish()`` after consuming what you need to verify the
        whole blob. Raises CorruptBlob if the blob is missing.
        """
        check_digest(digest)
        try:
            f = open(self.path(digest), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise CorruptBlob(f"blob {digest} is missing from the store; re-import the image") from None
        try:
            yield VerifyingReader(f, digest)
        finally:
            f.close()

    def read_bytes(self, digest: str, limit: int = 64 << 20) -> bytes:
        """Read a whole (small) blob and verify it; raises CorruptBlob if missing, altered or too big."""
        with self.open(digest) as reader:
            data = reader.read(limit + 1)
            if len(data) > limit:
                raise CorruptBlob(f"blob {digest} is larger than {limit} bytes; re-import the image")
            reader.finish()
        return data

    def size(self, digest: str) -> int:
        """Size in bytes of the stored blob (not verified)."""
        return self.path(digest).stat().st_size

    def digests(self) -> set[str]:
        """Digests of every blob file present."""
        if not self.root.is_dir():
            return set()
        return {f"sha256:{p.name}" for p in self.root.iterdir() if len(p.name) == 64}

    def delete(self, digest: str) -> None:
        """Remove a blob (no error if it is already gone)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))
