"""Bounded decompression: archive bombs are refused before they fill the disk (issue 11, item 8)."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from pathlib import Path

import pytest

from engine.images.bounded import ArchiveBomb, DecompressionLimits
from engine.images.compression import Compression, check_archive, decompressed
from engine.images.store import ImageStore
from engine.paths import EnginePaths

MiB = 1024**2


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks (a bomb's payload, never held in memory whole)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def xz_bomb(path: Path, unpacked: int = 128 * MiB) -> Path:
    """An xz-compressed tar holding one file of ``unpacked`` zeros (a few tens of KB on disk)."""
    with lzma.open(path, "wb", preset=0) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        info = tarfile.TarInfo("layer.tar")
        info.size = unpacked
        tar.addfile(info, Zeros(unpacked))
    return path


def layer_bomb(path: Path, unpacked: int = 128 * MiB) -> Path:
    """A plain tar whose one member is a gzip layer of ``unpacked`` zeros."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as gz:
        left = unpacked
        while left:
            gz.write(bytes(min(left, MiB)))
            left -= min(left, MiB)
    data = buf.getvalue()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_an_xz_bomb_is_refused_by_its_compression_ratio(tmp_path: Path) -> None:
    bomb = xz_bomb(tmp_path / "bomb.tar.xz")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ArchiveBomb, match="more than 100 times its compressed size"):
        check_archive(bomb, DecompressionLimits())


def test_a_gzip_layer_bomb_inside_a_plain_archive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveBomb, match=r"blobs/sha256/0+ unpacks to more than 100 times"):
        check_archive(layer_bomb(tmp_path / "bomb.tar"), DecompressionLimits())


def test_the_unpacked_size_limit_holds_whatever_the_ratio(tmp_path: Path) -> None:
    limits = DecompressionLimits(max_unpacked=8 * MiB)
    with pytest.raises(ArchiveBomb, match=r"more than 8388608 bytes \(HOSTPANEL_MAX_UNPACKED_BYTES\)"):
        check_archive(xz_bomb(tmp_path / "b.tar.xz", 16 * MiB), limits)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTPANEL_MAX_UNPACKED_BYTES", "1000")
    monkeypatch.setenv("HOSTPANEL_MAX_COMPRESSION_RATIO", "7")
    assert DecompressionLimits.from_env() == DecompressionLimits(max_unpacked=1000, max_ratio=7)
    reader = decompressed(io.BytesIO(gzip.compress(bytes(5000))), Compression.GZIP, what="the layer")
    with pytest.raises(ArchiveBomb, match="the layer unpacks to more than 1000 bytes"):
        reader.read()


def test_a_small_honest_archive_passes(tmp_path: Path) -> None:
    # zeros compress far better than 100:1, but below the 64 MiB floor the ratio is not checked
    assert check_archive(xz_bomb(tmp_path / "small.tar.xz", 4 * MiB), DecompressionLimits()) == 4 * MiB


def test_an_import_of_a_bomb_stages_nothing(tmp_path: Path) -> None:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    store = ImageStore(paths)
    with pytest.raises(ArchiveBomb, match="decompression bomb"):
        store.import_archive(xz_bomb(tmp_path / "bomb.tar.xz"), "acme/bomb:1")
    assert list(paths.blobs.iterdir()) == [] and list(paths.tmp.iterdir()) == []
    assert store.index.load() == []
