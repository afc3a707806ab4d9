"""Read image archives into staged images: docker-save, OCI image layout, plain rootfs tar.

- docker-save / podman-save (``manifest.json`` with Config, RepoTags, Layers);
- OCI image layout, as a directory or a tar (``oci-layout`` + ``index.json``),
  following one level of image index to the host's platform;
- anything else that is a tar: a plain root filesystem, one layer.

Every blob is hashed while it is staged; layer diff_ids are checked against
the config. Nothing is written to the store here (see :mod:`staging`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol, TypeVar

from engine.errors import CorruptBlob, InvalidArchive, InvalidReference
from engine.images.compression import ZSTD_HINT, Compression, check_archive, sniff_file
from engine.images.digest import check_digest, digest_hex, sha256_digest
from engine.images.extract import TAR_ERRORS
from engine.images.oci import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_LAYER_GZIP,
    MT_LAYER_TAR,
    MT_MANIFEST,
    ParsedConfig,
    build_config,
    build_manifest,
    host_architecture,
    parse_config,
    parse_json_object,
    parse_manifest,
    utc_now_iso,
)
from engine.images.reference import normalize_tag
from engine.images.staging import StagedImage, StagedLayer, Staging

T = TypeVar("T")
JSON_LIMIT = 16 << 20
_HEX_NAME_RE = re.compile(r"^(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json|\.tar)?$")


class ArchiveSource(Protocol):
    """Named files inside an archive (a tar) or a directory."""

    label: str

    def has(self, name: str) -> bool:
        """Whether ``name`` exists."""
        ...

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Open ``name`` for reading; raises InvalidArchive if it is missing."""
        ...


def _norm(name: str) -> str:
    return str(PurePosixPath("/", name)).lstrip("/")


class TarSource:
    """Members of a (possibly gzip/bzip2/xz-compressed) tar file, by normalised name."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        if sniff_file(path) is Compression.ZSTD:
            raise InvalidArchive(f"{path} is zstd-compressed: {ZSTD_HINT}")
        check_archive(path)  # a bomb is refused before anything of it is staged
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
            self._members = {_norm(m.name): m for m in self._tar.getmembers()}
        except TAR_ERRORS as exc:
            raise InvalidArchive(
                f"{path} is not a readable image archive (a docker-save or OCI archive, or a rootfs tar): "
                f"{str(exc).splitlines()[0]}"
            ) from None

    def close(self) -> None:
        """Close the tar file."""
        self._tar.close()

    def has(self, name: str) -> bool:
        """Whether the archive has a member ``name``."""
        return _norm(name) in self._members

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        """The data of member ``name`` (symlinks and hard links inside the archive are followed)."""
        member = self._members.get(_norm(name))
        if member is None:
            raise InvalidArchive(f"{self.label}: {name!r} is missing from the archive")
        try:
            f = self._tar.extractfile(member)
        except (KeyError, tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArchive(f"{self.label}: cannot read {name!r}: {exc}") from None
        if f is None:
            raise InvalidArchive(f"{self.label}: {name!r} is not a file")
        with f:
            yield f


class DirSource:
    """Files below a directory (an OCI image layout directory)."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self._root = path

    def _path(self, name: str) -> Path:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts or name.startswith("/"):
            raise InvalidArchive(f"{self.label}: refusing path {name!r} outside the layout")
        return self._root.joinpath(*parts)

    def has(self, name: str) -> bool:
        """Whether the file ``name`` exists."""
        return self._path(name).is_file()

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        """Open the file ``name``."""
        try:
            f = open(self._path(name), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise InvalidArchive(f"{self.label}: {name!r} is missing from the layout") from None
        with f:
            yield f


def _read(source: ArchiveSource, name: str, limit: int = JSON_LIMIT) -> bytes:
    with source.open(name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArchive(f"{source.label}: {name!r} is larger than {limit} bytes")
    return data


def _read_blob(source: ArchiveSource, digest: str, what: str, limit: int = JSON_LIMIT) -> bytes:
    data = _read(source, _blob_name(digest, what), limit)
    actual = sha256_digest(data)
    if actual != digest:
        raise CorruptBlob(f"{what} {digest} is corrupt in {source.label}: its content hashes to {actual}")
    return data


def _blob_name(digest: str, what: str) -> str:
    try:
        return f"blobs/sha256/{digest_hex(digest)}"
    except Exception:
        raise InvalidArchive(f"{what} has an invalid or unsupported digest {digest!r}") from None


def check_diff_ids(
    layers: Sequence[StagedLayer], config: ParsedConfig, label: str, names: Sequence[str]
) -> None:
    """Raise InvalidArchive unless the staged layers' uncompressed digests are the config's diff_ids."""
    if len(layers) != len(config.diff_ids):
        raise InvalidArchive(
            f"{label}: the image has {len(layers)} layers but its config lists "
            f"{len(config.diff_ids)} diff_ids"
        )
    for layer, expected, name in zip(layers, config.diff_ids, names, strict=True):
        if layer.diff_id != expected:
            raise CorruptBlob(
                f"{label}: layer {name} is corrupt: its uncompressed content hashes to {layer.diff_id} "
                f"but the "
                f"image config expects {expected}; re-save the image and import it again"
            )


def make_staged_image(
    staging: Staging,
    config_bytes: bytes,
    config: ParsedConfig,
    layers: list[StagedLayer],
    tags: list[str],
    manifest_bytes: bytes | None = None,
    manifest_media_type: str = MT_MANIFEST,
    config_expected: str | None = None,
) -> StagedImage:
    """Stage the config (and a built or given manifest) of an image whose layers are staged."""
    config_blob = staging.stage_bytes(config_bytes, config_expected)
    if manifest_bytes is None:
        manifest_bytes = build_manifest(
            config_blob.digest, config_blob.size, [(la.media_type, la.digest, la.blob.size) for la in layers]
        )
    return StagedImage(
        config=config_blob,
        manifest=staging.stage_bytes(manifest_bytes),
        manifest_media_type=manifest_media_type,
        layers=layers,
        tags=tags,
        created=config.created,
        size=sum(la.uncompressed_size for la in layers),
        diff_ids=config.diff_ids,
    )


def _normalize_tags(tags: Sequence[Any], label: str) -> list[str]:
    out: list[str] = []
    for t in tags:
        if not isinstance(t, str):
            raise InvalidArchive(f"{label}: tag {t!r} is not a string")
        try:
            n = normalize_tag(t)
        except InvalidReference as exc:
            raise InvalidArchive(f"{label}: {exc}") from None
        if n not in out:
            out.append(n)
    return out


# -- docker save ------------------------------------------------------------------------------


def read_docker_save(
    source: ArchiveSource, staging: Staging, *, first_only: bool = False
) -> list[StagedImage]:
    """Stage every image (or only the first) of a docker-save archive.

    Raises InvalidArchive / CorruptBlob / UnsafeArchive.
    """
    try:
        manifest = json.loads(_read(source, "manifest.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArchive(f"{source.label}: manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, list) or not manifest:
        raise InvalidArchive(f"{source.label}: manifest.json must be a non-empty list of images")
    layer_cache: dict[str, StagedLayer] = {}
    images: list[StagedImage] = []
    for n, entry in enumerate(manifest[:1] if first_only else manifest):
        label = f"{source.label} image {n}"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("Config"), str)
            or not isinstance(entry.get("Layers"), list)
        ):
            raise InvalidArchive(f"{label}: manifest.json entry needs 'Config' and 'Layers'")
        config_name: str = entry["Config"]
        config_bytes = _read(source, config_name)
        config = parse_config(config_bytes, f"{label} config {config_name}")
        m = _HEX_NAME_RE.match(_norm(config_name))
        config_expected = f"sha256:{m.group(1)}" if m else None
        layers: list[StagedLayer] = []
        names: list[str] = []
        for layer_name in entry["Layers"]:
            if not isinstance(layer_name, str):
                raise InvalidArchive(f"{label}: layer name {layer_name!r} is not a string")
            key = _norm(layer_name)
            if key not in layer_cache:
                lm = _HEX_NAME_RE.match(key)
                expected = f"sha256:{lm.group(1)}" if lm and key.startswith("blobs/") else None
                with source.open(layer_name) as f:
                    layer_cache[key] = staging.stage_layer(
                        f, f"{label} layer {layer_name}", expected=expected
                    )
            layers.append(layer_cache[key])
            names.append(layer_name)
        check_diff_ids(layers, config, label, names)
        tags = _normalize_tags(entry.get("RepoTags") or [], label)
        images.append(
            make_staged_image(staging, config_bytes, config, layers, tags, config_expected=config_expected)
        )
    return images


# -- OCI image layout -------------------------------------------------------------------------


def _descriptor_fields(d: Any, what: str) -> tuple[str, str, int]:
    if not isinstance(d, dict):
        raise InvalidArchive(f"{what} is not a descriptor object")
    mt, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
    if not isinstance(digest, str) or not isinstance(size, int):
        raise InvalidArchive(f"{what} lacks a digest or size")
    try:
        check_digest(digest)
    except Exception:
        raise InvalidArchive(f"{what} has an invalid or unsupported digest {digest!r}") from None
    return (mt if isinstance(mt, str) else ""), digest, size


def _ref_of(d: dict[str, Any]) -> str | None:
    ann = d.get("annotations") or {}
    if not isinstance(ann, dict):
        return None
    name = ann.get(ANNOTATION_CONTAINERD_NAME) or ann.get(ANNOTATION_REF_NAME)
    return name if isinstance(name, str) and name else None


def pick_platform(index: dict[str, Any], label: str) -> dict[str, Any]:
    """The manifest descriptor of an image index that fits this host (linux, its arch; else amd64).

    Raises InvalidArchive (naming ``label``) when the index lists nothing usable.
    """
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise InvalidArchive(f"{label}: the image index lists no manifests")
    candidates = [m for m in manifests if isinstance(m, dict)]
    with_platform = [m for m in candidates if isinstance(m.get("platform"), dict)]
    if not with_platform and len(candidates) == 1:
        return candidates[0]
    host = host_architecture()
    for arch in dict.fromkeys((host, "amd64")):
        for m in with_platform:
            p = m["platform"]
            if p.get("os") == "linux" and p.get("architecture") == arch:
                return m
    found = sorted({f"{m['platform'].get('os')}/{m['platform'].get('architecture')}" for m in with_platform})
    raise InvalidArchive(
        f"{label}: no linux/{host} image in the index (it has: {', '.join(found) or 'none'})"
    )


def read_oci_layout(
    source: ArchiveSource, staging: Staging, *, first_only: bool = False
) -> list[StagedImage]:
    """Stage every image (or only the first) of an OCI image layout.

    Raises InvalidArchive / CorruptBlob / UnsafeArchive.
    """
    layout = parse_json_object(_read(source, "oci-layout"), f"{source.label}: oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise InvalidArchive(f"{source.label}: oci-layout lacks imageLayoutVersion")
    index = parse_json_object(_read(source, "index.json"), f"{source.label}: index.json")
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise InvalidArchive(f"{source.label}: index.json lists no images")
    by_manifest: dict[str, StagedImage] = {}
    order: list[str] = []
    layer_cache: dict[str, StagedLayer] = {}
    for n, entry in enumerate(entries[:1] if first_only else entries):
        what = f"{source.label}: index.json entry {n}"
        mt, digest, _size = _descriptor_fields(entry, what)
        ref = _ref_of(entry)
        if mt in INDEX_TYPES:
            nested = parse_json_object(
                _read_blob(source, digest, f"{what} image index"), f"{what} image index"
            )
            picked = pick_platform(nested, what)
            mt, digest, _size = _descriptor_fields(picked, f"{what} platform manifest")
        if mt and mt not in MANIFEST_TYPES:
            raise InvalidArchive(f"{what} has unsupported media type {mt!r}")
        tags = _normalize_tags([ref] if ref else [], what)
        if digest in by_manifest:
            img = by_manifest[digest]
            img.tags.extend(t for t in tags if t not in img.tags)
            continue
        manifest_bytes = _read_blob(source, digest, f"{what} manifest")
        manifest = parse_manifest(manifest_bytes, f"{what} manifest {digest}")
        check = _descriptor_fields(
            {"digest": manifest.config_digest, "size": manifest.config_size}, f"{what} config"
        )
        config_bytes = _read_blob(source, check[1], f"{what} config")
        config = parse_config(config_bytes, f"{what} config {manifest.config_digest}")
        layers: list[StagedLayer] = []
        for i, layer in enumerate(manifest.layers):
            if layer.digest not in layer_cache:
                lwhat = f"{what} layer {i} ({layer.digest})"
                with source.open(_blob_name(layer.digest, lwhat)) as f:
                    layer_cache[layer.digest] = staging.stage_layer(
                        f, lwhat, expected=layer.digest, media_type=layer.media_type
                    )
            layers.append(layer_cache[layer.digest])
        check_diff_ids(layers, config, what, [la.digest for la in manifest.layers])
        if manifest.media_type == MT_DOCKER_MANIFEST:
            # Rewrite Docker schema 2 as an OCI manifest (same config, so the same image id).
            layers = [_as_oci_layer(la) for la in layers]
            staged = make_staged_image(staging, config_bytes, config, layers, tags)
        else:
            staged = make_staged_image(
                staging, config_bytes, config, layers, tags, manifest_bytes=manifest_bytes
            )
        by_manifest[digest] = staged
        order.append(digest)
    return [by_manifest[d] for d in order]


def _as_oci_layer(layer: StagedLayer) -> StagedLayer:
    mt = MT_LAYER_GZIP if layer.media_type == MT_DOCKER_LAYER_GZIP else layer.media_type
    if mt.startswith("application/vnd.docker."):
        mt = MT_LAYER_TAR
    return StagedLayer(
        blob=layer.blob,
        media_type=mt,
        diff_id=layer.diff_id,
        uncompressed_size=layer.uncompressed_size,
        has_bin_sh=layer.has_bin_sh,
    )


# -- plain rootfs tar -------------------------------------------------------------------------


def read_rootfs_tar(path: Path, staging: Staging, reference: str | None) -> StagedImage:
    """Stage a plain root filesystem tar as a one-layer image named ``reference``.

    The config gets the default PATH and ``Cmd ["sh"]`` when the tar has
    /bin/sh. Raises InvalidReference without a reference, InvalidArchive /
    UnsafeArchive for a bad tar.
    """
    if reference is None:
        raise InvalidReference(
            f"{path} is a plain root filesystem tar and has no image name; give one: "
            f"hpctl image import {path} NAME:TAG"
        )
    tag = normalize_tag(reference)
    with open(path, "rb") as f:
        layer = staging.stage_layer(f, f"{path}")
    created = utc_now_iso()
    config_bytes = build_config(
        [layer.diff_id],
        created=created,
        created_by=f"hpctl image import {os.path.basename(path)}",
        cmd=["sh"] if layer.has_bin_sh else [],
    )
    config = parse_config(config_bytes)
    return make_staged_image(staging, config_bytes, config, [layer], [tag])


# -- dispatch ---------------------------------------------------------------------------------


def read_archive(path: Path, staging: Staging, reference: str | None) -> list[StagedImage]:
    """Detect the format of ``path`` and stage its images.

    With ``reference``, only the first image is read and staged, named
    ``reference`` alone (the archive's own names for it are ignored). Raises
    InvalidArchive for unreadable input, CorruptBlob for content that does
    not match its digest, UnsafeArchive for hostile layers, InvalidReference
    for a bad name.
    """
    override = normalize_tag(reference) if reference is not None else None
    first = override is not None
    if path.is_dir():
        if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
            raise InvalidArchive(
                f"{path} is a directory but not an OCI image layout (no oci-layout and index.json)"
            )
        images = _guard(lambda: read_oci_layout(DirSource(path), staging, first_only=first), path)
    elif not path.is_file():
        raise InvalidArchive(f"{path} does not exist or is not a file")
    else:
        source = _guard(lambda: TarSource(path), path)
        try:
            if source.has("manifest.json"):
                images = _guard(lambda: read_docker_save(source, staging, first_only=first), path)
            elif source.has("oci-layout") and source.has("index.json"):
                images = _guard(lambda: read_oci_layout(source, staging, first_only=first), path)
            else:
                return [_guard(lambda: read_rootfs_tar(path, staging, reference), path)]
        finally:
            source.close()
    if override is not None and images:
        images[0].tags = [override]
    return images


def _guard(fn: Callable[[], T], path: Path) -> T:
    """Run ``fn``, turning low-level tar and decompression errors into InvalidArchive."""
    try:
        return fn()
    except TAR_ERRORS as exc:
        raise InvalidArchive(f"{path}: the archive is truncated or corrupt ({exc})") from None
