"""Builders for image test archives: layer tars, docker-save archives, OCI layouts.

Everything is built in memory with tarfile so tests control every byte
(hostile member names, wrong digests, media types ...).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.images.layout import IndexEntry
from engine.images.oci import MT_CONFIG, MT_INDEX, MT_LAYER_GZIP, MT_LAYER_TAR, MT_MANIFEST
from engine.images.store import ImageStore

MTIME = 1_700_000_000


@dataclass
class Entry:
    """One tar member to write."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    mtime: int = MTIME


def f(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    """A regular file."""
    return Entry(name, tarfile.REGTYPE, data, mode, uid, gid)


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    """A directory."""
    return Entry(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid)


def sym(name: str, target: str) -> Entry:
    """A symlink."""
    return Entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def hard(name: str, target: str) -> Entry:
    """A hard link to ``target``."""
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def chardev(name: str, major: int = 1, minor: int = 3) -> Entry:
    """A character device node."""
    return Entry(name, tarfile.CHRTYPE, mode=0o666, devmajor=major, devminor=minor)


def blockdev(name: str, major: int = 8, minor: int = 0) -> Entry:
    """A block device node."""
    return Entry(name, tarfile.BLKTYPE, mode=0o660, devmajor=major, devminor=minor)


def fifo(name: str) -> Entry:
    """A named pipe."""
    return Entry(name, tarfile.FIFOTYPE, mode=0o644)


def tar_bytes(entries: Sequence[Entry]) -> bytes:
    """A tar archive of ``entries`` in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = e.type, e.mode, e.uid, e.gid, e.mtime
            ti.linkname, ti.devmajor, ti.devminor = e.linkname, e.devmajor, e.devminor
            if e.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))
            else:
                tar.addfile(ti)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    """Deterministic gzip of ``data``."""
    return gzip.compress(data, mtime=0)


def sha(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rootfs(tag: str = "base", extra: Sequence[Entry] = ()) -> bytes:
    """A small root filesystem layer with /bin/sh and a file naming ``tag``."""
    return tar_bytes(
        [d("bin"), f("bin/sh", b"#!fake shell\n", 0o755), d("etc"), f(f"etc/{tag}", tag.encode()), *extra]
    )


def config_json(
    diff_ids: Sequence[str],
    *,
    created: str = "2024-01-02T03:04:05Z",
    cmd: Sequence[str] = ("sh",),
    architecture: str = "amd64",
    label: str = "",
) -> bytes:
    """An image config for layers with ``diff_ids``."""
    cfg: dict[str, Any] = {"Env": ["PATH=/usr/bin:/bin"], "Cmd": list(cmd)}
    if label:
        cfg["Labels"] = {"test": label}
    return json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": created,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        },
        sort_keys=True,
    ).encode()


@dataclass
class ArchiveImage:
    """An image to put into a test archive: uncompressed layer tars, tags, config tweaks."""

    layers: list[bytes]
    tags: list[str] = field(default_factory=list)
    gzip_layers: bool = False
    created: str = "2024-01-02T03:04:05Z"
    architecture: str = "amd64"
    label: str = ""
    config_override: bytes | None = None

    @property
    def config(self) -> bytes:
        """The config bytes (diff_ids of the uncompressed layers)."""
        if self.config_override is not None:
            return self.config_override
        return config_json(
            [sha(la) for la in self.layers],
            created=self.created,
            architecture=self.architecture,
            label=self.label,
        )

    @property
    def id(self) -> str:
        """The image id (config digest)."""
        return sha(self.config)

    def layer_blobs(self) -> list[bytes]:
        """The layers as stored in an archive (gzipped if asked)."""
        return [gz(la) if self.gzip_layers else la for la in self.layers]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
    tar.addfile(ti, io.BytesIO(data))


def docker_save(path: Path, images: Sequence[ArchiveImage]) -> Path:
    """Write a docker-save archive (legacy layout: <id>.json, <n>/layer.tar, manifest.json)."""
    manifest = []
    with tarfile.open(path, "w") as tar:
        written: set[str] = set()
        for img in images:
            layer_names = []
            for blob in img.layer_blobs():
                name = f"{hashlib.sha256(blob).hexdigest()}/layer.tar"
                if name not in written:
                    _add(tar, name, blob)
                    written.add(name)
                layer_names.append(name)
            config_name = f"{img.id.split(':')[1]}.json"
            if config_name not in written:
                _add(tar, config_name, img.config)
                written.add(config_name)
            manifest.append({"Config": config_name, "RepoTags": img.tags, "Layers": layer_names})
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def oci_manifest(img: ArchiveImage, layer_media_type: str | None = None) -> bytes:
    """An OCI manifest for ``img``."""
    blobs = img.layer_blobs()
    mt = layer_media_type or (MT_LAYER_GZIP if img.gzip_layers else MT_LAYER_TAR)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": img.id, "size": len(img.config)},
            "layers": [{"mediaType": mt, "digest": sha(b), "size": len(b)} for b in blobs],
        }
    ).encode()


def oci_files(
    images: Sequence[ArchiveImage], *, layer_media_type: str | None = None, platform_index: bool = False
) -> dict[str, bytes]:
    """The files of an OCI image layout holding ``images`` (one index entry per tag).

    With ``platform_index`` the images become the platforms of one image
    index (their ``architecture``), tagged with the first image's tags.
    """
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    entries: list[dict[str, Any]] = []
    platform_manifests: list[dict[str, Any]] = []
    for img in images:
        for blob in [*img.layer_blobs(), img.config]:
            files[f"blobs/sha256/{sha(blob).split(':')[1]}"] = blob
        manifest = oci_manifest(img, layer_media_type)
        files[f"blobs/sha256/{sha(manifest).split(':')[1]}"] = manifest
        desc = {"mediaType": MT_MANIFEST, "digest": sha(manifest), "size": len(manifest)}
        if platform_index:
            platform_manifests.append({**desc, "platform": {"os": "linux", "architecture": img.architecture}})
        else:
            for tag in img.tags or [None]:
                entries.append(
                    {**desc, **({"annotations": {"org.opencontainers.image.ref.name": tag}} if tag else {})}
                )
    if platform_index:
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": platform_manifests}
        ).encode()
        files[f"blobs/sha256/{sha(index).split(':')[1]}"] = index
        ann = {"org.opencontainers.image.ref.name": images[0].tags[0]} if images[0].tags else {}
        entries.append({"mediaType": MT_INDEX, "digest": sha(index), "size": len(index), "annotations": ann})
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    return files


def write_dir(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` below the directory ``path``."""
    for name, data in files.items():
        p = path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return path


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` as a tar archive at ``path``."""
    with tarfile.open(path, "w") as tar:
        for name, data in sorted(files.items()):
            _add(tar, name, data)
    return path


def plant_image(store: ImageStore, layers: Sequence[bytes], tag: str = "planted:latest") -> str:
    """Put an image into ``store`` without the import checks (to test extraction of hostile layers).

    Returns the image id.
    """
    img = ArchiveImage(layers=list(layers))
    for layer in layers:
        store.blobs.put_bytes(layer)
    store.blobs.put_bytes(img.config)
    manifest = oci_manifest(img)
    store.blobs.put_bytes(manifest)
    with store.index.locked():
        entries = store.index.load()
        entries.append(
            IndexEntry(
                manifest_digest=sha(manifest),
                manifest_size=len(manifest),
                image_id=img.id,
                created="2024-01-02T03:04:05Z",
                size=sum(map(len, layers)),
                ref=tag,
            )
        )
        store.index.save(entries)
    return img.id


def tree(path: Path) -> list[str]:
    """Every path below ``path`` (relative, sorted), not following symlinks."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
