"""The content-addressed blob store: verified reads, atomic writes, one copy per content."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.errors import CorruptBlob
from engine.images.blobs import BlobStore
from tests.engine.images_fixtures import sha


@pytest.fixture()
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs" / "sha256", tmp_path / "tmp")


def test_put_and_read_back(store: BlobStore) -> None:
    data = b"hello blob\n" * 1000
    digest = store.put_bytes(data)
    assert digest == sha(data)
    assert store.read_bytes(digest) == data
    assert store.path(digest).read_bytes() == data
    with store.open(digest) as reader:
        assert reader.read(5) == b"hello"
        reader.finish()


def test_identical_blobs_are_stored_once(store: BlobStore) -> None:
    a = store.put_bytes(b"same")
    b = store.put_bytes(b"same")
    assert a == b
    assert store.digests() == {a}
    assert len(list(store.root.iterdir())) == 1


def test_truncated_blob_raises_corrupt_blob_naming_the_digest(store: BlobStore) -> None:
    digest = store.put_bytes(b"0123456789" * 100)
    with open(store.path(digest), "r+b") as fh:
        fh.truncate(500)
    with pytest.raises(CorruptBlob) as exc:
        store.read_bytes(digest)
    assert digest in str(exc.value)
    assert "re-import" in str(exc.value)


def test_altered_blob_of_the_same_size_raises_corrupt_blob(store: BlobStore) -> None:
    digest = store.put_bytes(b"0123456789" * 100)
    raw = bytearray(store.path(digest).read_bytes())
    raw[10] ^= 0xFF
    store.path(digest).write_bytes(bytes(raw))
    with pytest.raises(CorruptBlob, match=digest), store.open(digest) as reader:
        while reader.read(64):
            pass


def test_streaming_reader_raises_at_end_even_without_finish(store: BlobStore) -> None:
    digest = store.put_bytes(b"abc" * 10)
    store.path(digest).write_bytes(b"xyz" * 10)
    with pytest.raises(CorruptBlob), store.open(digest) as reader:
        reader.read()
        reader.read()


def test_missing_blob_raises_corrupt_blob(store: BlobStore) -> None:
    missing = sha(b"never stored")
    with pytest.raises(CorruptBlob, match="missing"):
        store.read_bytes(missing)


def test_expected_digest_mismatch_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(CorruptBlob):
        store.put_bytes(b"actual", expected=sha(b"claimed"))
    with store.writer() as w, pytest.raises(CorruptBlob):
        w.write(b"actual")
        w.finish(expected=sha(b"claimed"))
    assert store.digests() == set()
    assert list(store.tmp_dir.iterdir()) == []


class _Exploding(io.RawIOBase):
    """A stream that fails half way, like a network or disk error."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 3:
            raise OSError("device went away")
        return b"x" * 1000


def test_failed_write_leaves_no_tmp_file_and_no_blob(store: BlobStore) -> None:
    with pytest.raises(OSError, match="went away"), store.writer() as w:
        w.copy_from(_Exploding())
    assert list(store.tmp_dir.iterdir()) == []
    assert store.digests() == set()


def test_blob_is_invisible_until_committed(store: BlobStore) -> None:
    with store.writer() as w:
        w.write(b"staged content")
        staged = w.finish()
        assert not store.exists(staged.digest)
        store.commit(staged)
    assert store.read_bytes(staged.digest) == b"staged content"
    assert list(store.tmp_dir.iterdir()) == []


def test_commit_repairs_a_corrupt_copy(store: BlobStore) -> None:
    digest = store.put_bytes(b"good")
    store.path(digest).write_bytes(b"bad!")
    store.put_bytes(b"good")
    assert store.read_bytes(digest) == b"good"
