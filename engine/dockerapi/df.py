"""``GET /system/df``: images, containers, volumes and build cache with their disk use."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

from engine.dockerapi.http import Request, Response, Router, json_response
from engine.dockerapi.images import image_summary
from engine.dockerapi.record import DockerRecord
from engine.dockerapi.record import load as load_record
from engine.dockerapi.render import summary_json
from engine.dockerapi.volumes import volume_json
from engine.errors import EngineError, NotFound
from engine.images.oci import parse_manifest
from engine.runtime.model import Container

if TYPE_CHECKING:
    from engine.engine import Engine


def container_df(container: Container, record: DockerRecord) -> dict[str, Any]:
    """A container as ``system df`` lists it: its ``docker ps`` line; the writable layer is not measured."""
    return {**summary_json(container, record), "SizeRw": 0, "SizeRootFs": 0}


def register(router: Router, engine: Engine) -> None:
    """Add ``GET /system/df`` for ``engine`` to ``router``."""

    def record_of(container: Container) -> DockerRecord:
        return load_record(engine.containers.store.directory(container.id))

    @router.route("GET", "/system/df")
    def disk_usage(request: Request) -> Response:
        containers = engine.list(all=True)
        users = Counter(c.image_id for c in containers)
        images = engine.images.list()
        volumes = []
        for volume in engine.volume_list():
            with contextlib.suppress(NotFound, FileNotFoundError):
                usage = engine.volumes.usage(volume.name)
                mountpoint = str(engine.volumes.data_dir(volume.name))
                volumes.append(volume_json(volume, mountpoint, (usage.used, usage.users)))
        layers: dict[str, int] = {}  # shared layers count once
        for image in images:
            with contextlib.suppress(EngineError, OSError):
                manifest = parse_manifest(engine.images.blobs.read_bytes(image.digest))
                layers.update((la.digest, la.size) for la in manifest.layers)
        return json_response(
            {
                "LayersSize": sum(layers.values()),
                "Images": [image_summary(i, users[i.id]) for i in images],
                "Containers": [container_df(c, record_of(c)) for c in containers],
                "Volumes": volumes,
                "BuildCache": [],
            }
        )
