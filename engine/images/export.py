"""Write an image as an OCI image layout tar (readable by skopeo, umoci, podman)."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engine.errors import CorruptBlob
from engine.images.blobs import BlobStore
from engine.images.digest import digest_hex
from engine.images.oci import ANNOTATION_REF_NAME, MT_INDEX, canonical_json, descriptor

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def _info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def write_oci_archive(
    blobs: BlobStore,
    dest: Path,
    *,
    manifest_digest: str,
    manifest_media_type: str,
    manifest_size: int,
    blob_digests: Sequence[str],
    ref_name: str | None,
) -> None:
    """Write an OCI layout tar with one manifest (tagged ``ref_name``) and its blobs to ``dest``.

    The tar is deterministic (sorted names, mtime 0) and appears atomically:
    it is written next to ``dest`` and renamed. Every blob is verified while
    copied; raises CorruptBlob (and writes nothing) if one is damaged.
    """
    annotations = {ANNOTATION_REF_NAME: ref_name} if ref_name else None
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [descriptor(manifest_media_type, manifest_digest, manifest_size, annotations)],
        }
    )
    dest = dest.absolute()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info("oci-layout", len(OCI_LAYOUT)), io.BytesIO(OCI_LAYOUT))
            tar.addfile(_info("index.json", len(index)), io.BytesIO(index))
            tar.addfile(_info("blobs", directory=True))
            tar.addfile(_info("blobs/sha256", directory=True))
            for digest in sorted(set(blob_digests)):
                size = blobs.size(digest) if blobs.exists(digest) else -1
                if size < 0:
                    raise CorruptBlob(f"blob {digest} is missing from the store; re-import the image")
                with blobs.open(digest) as reader:
                    tar.addfile(_info(f"blobs/sha256/{digest_hex(digest)}", size), reader)
                    reader.finish()
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
