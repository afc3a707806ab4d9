"""An uploaded build context (a tar, plain or compressed) unpacked safely into a directory.

Shared by every door that takes a context as an archive (the panel's build uploads, the Docker
API's ``POST /build``): the tar is extracted by :func:`engine.images.extract.extract_layer` (no
member lands outside the directory, symlinks are created but never followed while writing,
devices are skipped, set-id bits dropped), and what it unpacks to is bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from engine.build.context import Bounded
from engine.images.compression import decompressed, sniff
from engine.images.extract import extract_layer


def unpack_context(archive: Path, into: Path, *, limit: int, what: str = "the context tar") -> None:
    """Extract the context tar at ``archive`` into the existing empty directory ``into``.

    Raises UnsafeArchive (a member that would escape), InvalidArchive (not a tar, or a
    decompression bomb), InvalidSpec once it unpacks to more than ``limit`` bytes (``what`` names
    the setting in that message). On error ``into`` is partly written: the caller removes it.
    """
    with archive.open("rb") as f:
        unpack_archive(f, into, limit=limit, what=what)


def unpack_archive(f: BinaryIO, into: Path, *, limit: int, what: str) -> None:
    """:func:`unpack_context` from an open, seekable file: a project or context tar (plain or
    compressed) unpacked safely on any Python (tarfile's extraction filters need 3.11.4+)."""
    kind = sniff(f.read(6))
    f.seek(0)
    stream = Bounded(decompressed(f, kind), limit, what)
    extract_layer(stream, into, uid_base=0, chown=False, whiteouts=False)
