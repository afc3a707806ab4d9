"""OCI image-spec documents: media types, manifests, configs, and host platform names."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.errors import InvalidArchive
from engine.images.model import ImageConfig

# Media types we write.
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# Media types we read as well.
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

MANIFEST_TYPES = (MT_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_INDEX, MT_DOCKER_LIST)
GZIP_LAYER_TYPES = (
    MT_LAYER_GZIP,
    MT_DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
TAR_LAYER_TYPES = (
    MT_LAYER_TAR,
    MT_DOCKER_LAYER_TAR,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)
ZSTD_LAYER_TYPES = (MT_LAYER_ZSTD, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_architecture() -> str:
    """The host CPU as an OCI/Go architecture name (amd64, arm64, ...)."""
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine)


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` deterministically (sorted keys, no spaces) so equal documents hash equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse ``data`` as a JSON object; raises InvalidArchive naming ``what`` otherwise."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArchive(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArchive(f"{what} is not a JSON object")
    return value


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with a 'Z' (second precision)."""
    return iso_from_timestamp(datetime.now(UTC).timestamp())


def iso_from_timestamp(ts: float) -> str:
    """A Unix timestamp as ISO-8601 UTC, e.g. ``2024-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_created(text: str) -> datetime | None:
    """Parse an OCI ``created`` timestamp (RFC 3339, nanoseconds allowed); None if unparsable."""
    if not text:
        return None
    s = text.strip().replace("z", "Z")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    # Python keeps at most microseconds: cut longer fractions.
    if "." in s:
        head, _, rest = s.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        s = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        value = datetime.fromisoformat(s)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def descriptor(
    media_type: str, digest: str, size: int, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An OCI content descriptor."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def build_manifest(config_digest: str, config_size: int, layers: Sequence[tuple[str, str, int]]) -> bytes:
    """An OCI image manifest (canonical JSON) for a config and ``(media_type, digest, size)`` layers."""
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": descriptor(MT_CONFIG, config_digest, config_size),
            "layers": [descriptor(mt, dg, sz) for mt, dg, sz in layers],
        }
    )


def build_config(
    diff_ids: Sequence[str],
    *,
    created: str,
    created_by: str,
    env: Sequence[str] = (f"PATH={DEFAULT_PATH}",),
    cmd: Sequence[str] = (),
    architecture: str | None = None,
) -> bytes:
    """An OCI image config (canonical JSON) with one history entry per layer."""
    config: dict[str, Any] = {"Env": list(env)}
    if cmd:
        config["Cmd"] = list(cmd)
    return canonical_json(
        {
            "architecture": architecture or host_architecture(),
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created": created, "created_by": created_by} for _ in diff_ids],
        }
    )


@dataclass(frozen=True)
class LayerRef:
    """A layer as a manifest lists it."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class ParsedManifest:
    """The parts of an image manifest the store uses."""

    media_type: str
    config_digest: str
    config_size: int
    layers: tuple[LayerRef, ...]


def _str_field(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidArchive(f"{what}: field {key!r} is missing or not a string")
    return value


def _int_field(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArchive(f"{what}: field {key!r} is missing or not a size")
    return value


def parse_manifest(data: bytes, what: str = "manifest") -> ParsedManifest:
    """Parse an OCI or Docker schema-2 image manifest; raises InvalidArchive if malformed."""
    doc = parse_json_object(data, what)
    media_type = doc.get("mediaType") or MT_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise InvalidArchive(f"{what} has unsupported media type {media_type!r}")
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise InvalidArchive(f"{what} lacks 'config' or 'layers'")
    parsed_layers = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise InvalidArchive(f"{what}: layer {i} is not an object")
        lwhat = f"{what} layer {i}"
        parsed_layers.append(
            LayerRef(
                media_type=_str_field(layer, "mediaType", lwhat),
                digest=_str_field(layer, "digest", lwhat),
                size=_int_field(layer, "size", lwhat),
            )
        )
    return ParsedManifest(
        media_type=str(media_type),
        config_digest=_str_field(config, "digest", f"{what} config"),
        config_size=_int_field(config, "size", f"{what} config"),
        layers=tuple(parsed_layers),
    )


@dataclass(frozen=True)
class ParsedConfig:
    """The parts of an image config the store uses."""

    created: str
    architecture: str
    os: str
    diff_ids: tuple[str, ...]
    config: ImageConfig
    raw: dict[str, Any]


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, str):
        return (value,)
    return ()


def parse_config(data: bytes, what: str = "image config") -> ParsedConfig:
    """Parse an image config into :class:`ParsedConfig`; raises InvalidArchive if malformed."""
    doc = parse_json_object(data, what)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidArchive(f"{what} lacks rootfs.diff_ids")
    diff_ids = rootfs["diff_ids"]
    if not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArchive(f"{what}: rootfs.diff_ids must be strings")
    c = doc.get("config") or {}
    if not isinstance(c, dict):
        raise InvalidArchive(f"{what}: 'config' is not an object")
    labels = c.get("Labels") or {}
    exposed = c.get("ExposedPorts") or {}
    volumes = c.get("Volumes") or {}
    image_config = ImageConfig(
        env=_str_list(c.get("Env")),
        cmd=_str_list(c.get("Cmd")),
        entrypoint=_str_list(c.get("Entrypoint")),
        working_dir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""),
        stop_signal=str(c.get("StopSignal") or ""),
        exposed_ports=tuple(sorted(str(k) for k in exposed)) if isinstance(exposed, dict) else (),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        volumes=tuple(sorted(str(k) for k in volumes)) if isinstance(volumes, dict) else (),
    )
    return ParsedConfig(
        created=str(doc.get("created") or ""),
        architecture=str(doc.get("architecture") or ""),
        os=str(doc.get("os") or ""),
        diff_ids=tuple(diff_ids),
        config=image_config,
        raw=doc,
    )
