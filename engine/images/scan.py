"""Read a layer once at import: its diff_id, uncompressed size, and early safety checks.

The scan refuses what extraction would refuse anyway (absolute or ``..``
paths, hard links out of the layer, writing through a symlink of the same
layer), so a hostile archive fails at `image import` instead of at container
start. Extraction (:mod:`engine.images.extract`) enforces the same rules again.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import IO, cast

from engine.errors import InvalidArchive, UnsafeArchive
from engine.images.compression import Compression, decompressed
from engine.images.digest import HashingReader, Readable
from engine.images.extract import TAR_ERRORS
from engine.images.tarpath import WHITEOUT_PREFIX, display, member_parts

_SH_PATHS = {("bin",), ("bin", "sh"), ("usr", "bin", "sh")}


@dataclass(frozen=True)
class LayerScan:
    """What a layer scan found."""

    diff_id: str
    size: int
    members: int
    has_bin_sh: bool


def scan_layer(stream: Readable | IO[bytes], compression: Compression, what: str) -> LayerScan:
    """Decompress and parse the layer ``stream`` to its end; return its diff_id and size.

    Raises InvalidArchive (naming ``what``) for a stream that is not a tar or
    uses zstd, UnsafeArchive for a member that could escape the layer.
    """
    raw = decompressed(stream, compression)
    hashing = HashingReader(raw)
    symlinks: set[tuple[str, ...]] = set()
    linkable: set[tuple[str, ...]] = set()
    seen: dict[tuple[str, ...], tarfile.TarInfo] = {}
    members = 0
    try:
        with tarfile.open(fileobj=cast(IO[bytes], hashing), mode="r|") as tar:
            for m in tar:
                members += 1
                parts = member_parts(m.name, m.name)
                for i in range(1, len(parts)):
                    if parts[:i] in symlinks:
                        raise UnsafeArchive(
                            f"{what}: archive member {m.name!r} goes through the symlink "
                            f"{display(parts[:i])!r} of the same layer; refusing it"
                        )
                if m.islnk():
                    target = member_parts(m.linkname, m.name)
                    if target != parts and target not in linkable:
                        raise UnsafeArchive(
                            f"{what}: archive member {m.name!r} is a hard link to {m.linkname!r}, "
                            "which is not a file earlier in this layer; refusing to link outside the layer"
                        )
                if parts and not parts[-1].startswith(WHITEOUT_PREFIX):
                    n = len(parts)
                    symlinks = {s for s in symlinks if s[:n] != parts} if m.isdir() else symlinks
                    if m.issym():
                        symlinks.add(parts)
                    elif parts in symlinks:
                        symlinks.discard(parts)
                    if m.isreg() or m.issym() or m.islnk() or m.isfifo():
                        linkable.add(parts)
                    if parts in _SH_PATHS:
                        seen[parts] = m
        hashing.drain()
    except TAR_ERRORS as exc:
        raise InvalidArchive(f"{what} is not a valid tar archive: {exc}") from None
    return LayerScan(diff_id=hashing.digest, size=hashing.count, members=members, has_bin_sh=_has_sh(seen))


def _has_sh(seen: dict[tuple[str, ...], tarfile.TarInfo]) -> bool:
    if ("bin", "sh") in seen:
        return True
    bin_dir = seen.get(("bin",))
    return (
        bin_dir is not None
        and bin_dir.issym()
        and bin_dir.linkname.strip("/") in ("usr/bin", "./usr/bin")
        and ("usr", "bin", "sh") in seen
    )
