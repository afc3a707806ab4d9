"""The registry's bytes on disk, below HOSTPANEL_REGISTRY_ROOT::

    blobs/sha256/<hex>   content-addressed blobs in the engine's format (engine.images.blobs.BlobStore)
    tmp/                 the blob store's staging area
    uploads/<uuid>       the bytes of an upload in progress (moved into blobs/ when it completes)
    gc.lock              writers hold it shared, the GC sweep exclusive

Uploads are appended in chunks straight from the request stream; nothing
holds a whole blob in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.conf import settings

from engine.images.blobs import BlobStore
from engine.images.digest import Readable, VerifyingReader

CHUNK = 1 << 20


def root() -> Path:
    return Path(settings.HOSTPANEL_REGISTRY_ROOT)


def blob_store() -> BlobStore:
    """The registry's content-addressed blob store."""
    return BlobStore(root() / "blobs" / "sha256", root() / "tmp")


def uploads_dir() -> Path:
    path = root() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_path(upload_id: str) -> Path:
    return uploads_dir() / str(upload_id)


@contextlib.contextmanager
def gc_lock(*, exclusive: bool) -> Iterator[None]:
    """Writers (commit, link, manifest put) hold it shared; the GC sweep holds it exclusive."""
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / "gc.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class _HashCache:
    """Running sha256 of uploads appended by this process, so completing one need not re-read it.

    Only a hint: when the cached length differs from the file (another process
    appended, or the process restarted) the file is hashed from disk.
    """

    def __init__(self, limit: int = 256) -> None:
        self._items: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def take(self, key: str, size: int) -> hashlib._Hash | None:
        with self._lock:
            item = self._items.pop(key, None)
        return item[1] if item is not None and item[0] == size else None

    def put(self, key: str, size: int, h: hashlib._Hash) -> None:
        with self._lock:
            self._items[key] = (size, h)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


hashes = _HashCache()


def create_upload_file(upload_id: str) -> None:
    upload_path(upload_id).touch(exist_ok=False)
    hashes.put(str(upload_id), 0, hashlib.sha256())


def append(upload_id: str, offset: int, source: Readable, limit: int | None) -> int:
    """Append ``source`` (at most ``limit`` bytes) to the upload that is ``offset`` bytes long.

    Returns the number of bytes written. On any error the file is cut back to
    ``offset`` so a broken request leaves the upload as it was.
    """
    key = str(upload_id)
    path = upload_path(key)
    h = hashes.take(key, offset)
    written = 0
    try:
        with open(path, "r+b") as f:
            f.seek(offset)
            while limit is None or written < limit:
                want = CHUNK if limit is None else min(CHUNK, limit - written)
                data = source.read(want)
                if not data:
                    break
                f.write(data)
                if h is not None:
                    h.update(data)
                written += len(data)
            f.truncate()
    except BaseException:
        with contextlib.suppress(OSError):
            os.truncate(path, offset)
        raise
    if h is not None:
        hashes.put(key, offset + written, h)
    return written


def truncate(upload_id: str, size: int) -> None:
    """Cut an upload back to ``size`` bytes (undo a chunk that was refused)."""
    hashes.forget(str(upload_id))
    os.truncate(upload_path(upload_id), size)


def upload_digest(upload_id: str, size: int) -> str:
    """The sha256 digest of an upload's ``size`` bytes (cached, or hashed from disk)."""
    h = hashes.take(str(upload_id), size)
    if h is None:
        h = hashlib.sha256()
        with open(upload_path(upload_id), "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def remove_upload_file(upload_id: str) -> None:
    hashes.forget(str(upload_id))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(upload_path(upload_id))


class LimitedReader:
    """Read at most ``length`` bytes of ``f`` from where it stands (a Range response's body)."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self._f = f
        self._left = length

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._f.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


class VerifiedBlobFile(VerifyingReader):
    """A stored blob opened for a response: raises CorruptBlob at its end if it was altered."""

    def __init__(self, path: Path, digest: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        super().__init__(self._file, digest)

    def close(self) -> None:
        self._file.close()
