"""Volume endpoints: create, list, inspect, remove, prune.

Only the ``local`` driver exists. Its one option is ``size`` (a cap: the volume is then its own
ext4 file system); the local driver's ``type``/``device``/``o`` options would mount a host
device or path, and are refused with a 403 naming them. The operator's volumes belong to the
``default`` tenant, as `hpctl volume create` makes them.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine.cgroups.resources import parse_bytes
from engine.dockerapi.filters import bool_filter, labels_match, request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, json_response, no_content
from engine.errors import Conflict, VolumeNotFound
from engine.volumes.model import Volume

if TYPE_CHECKING:
    from engine.engine import Engine

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_CREATE_FIELDS = {"Name", "Driver", "DriverOpts", "Labels", "ClusterVolumeSpec"}


def volume_json(volume: Volume, mountpoint: str, usage: tuple[int, int] | None = None) -> dict[str, Any]:
    """A volume as Docker shows it; ``usage`` (bytes used, containers) adds ``UsageData`` (system df)."""
    data: dict[str, Any] = {
        "Name": volume.name,
        "Driver": "local",
        "Mountpoint": mountpoint,
        "CreatedAt": volume.created,
        "Labels": dict(volume.labels),
        "Scope": "local",
        "Options": {"size": str(volume.size)} if volume.size else None,
    }
    if usage is not None:
        data["UsageData"] = {"Size": usage[0], "RefCount": usage[1]}
    return data


def volume_selected(name: str, labels: dict[str, str], in_use: bool, filters: dict[str, list[str]]) -> bool:
    """Whether a volume passes ``docker volume ls`` filters (name, driver, label, dangling)."""
    dangling = bool_filter(filters, "dangling")
    return (
        all(n in name for n in filters.get("name", []))
        and all(d == "local" for d in filters.get("driver", []))
        and labels_match(labels, filters.get("label", []))
        and (dangling is None or dangling == (not in_use))
    )


def parse_create(body: Any) -> tuple[str, int | None, dict[str, str]]:
    """``POST /volumes/create``'s body as (name, size cap or None, labels); 400/403 for what we refuse."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise APIError(400, f"unknown field {unknown[0]!r} in the volume create request")
    if body.get("ClusterVolumeSpec"):
        raise APIError(400, "cluster volumes (ClusterVolumeSpec) are not supported")
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise APIError(400, f"volume driver {driver!r} is not supported: only the local driver exists here")
    name = body.get("Name") or secrets.token_hex(32)
    if not isinstance(name, str):
        raise APIError(400, "Name must be a string")
    size = None
    for key, value in (body.get("DriverOpts") or {}).items():
        if key != "size":
            raise APIError(
                403, f"DriverOpts.{key} is not allowed: a volume cannot mount a host device or path"
            )
        size = parse_bytes(str(value), "volume size")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise APIError(400, "Labels must be a JSON object of strings")
    return name, size, labels


@contextlib.contextmanager
def volume_lookup(name: str) -> Iterator[None]:
    """Docker's ``get NAME: no such volume`` 404 for the engine's VolumeNotFound."""
    try:
        yield
    except VolumeNotFound:
        raise APIError(404, f"get {name}: no such volume") from None


def register(router: Router, engine: Engine) -> None:
    """Add the volume endpoints for ``engine`` to ``router``."""
    volumes = engine.volumes

    def shown(volume: Volume) -> dict[str, Any]:
        return volume_json(volume, str(volumes.data_dir(volume.name)))

    def selected(request: Request, allowed: tuple[str, ...]) -> list[Volume]:
        filters = request_filters(request, allowed)
        return [
            v
            for v in volumes.list()
            if volume_selected(v.name, v.labels, bool(volumes.users(v.name)), filters)
        ]

    @router.route("POST", "/volumes/create")
    def create(request: Request) -> Response:
        name, size, labels = parse_create(request.json())
        if volumes.exists(name):  # like docker: creating an existing volume answers it
            return json_response(shown(volumes.get(name)), 201)
        return json_response(shown(engine.volume_create(name, size=size, labels=labels)), 201)

    @router.route("GET", "/volumes")
    def list_volumes(request: Request) -> Response:
        chosen = selected(request, ("name", "label", "dangling", "driver"))
        return json_response({"Volumes": [shown(v) for v in chosen], "Warnings": []})

    @router.route("GET", "/volumes/{name}")
    def inspect(request: Request) -> Response:
        name = request.params["name"]
        with volume_lookup(name):
            return json_response(shown(engine.volume(name)))

    @router.route("DELETE", "/volumes/{name}")
    def remove(request: Request) -> Response:
        name = request.params["name"]
        try:
            engine.volume_remove(name)  # never removed under a container, even with force
        except VolumeNotFound:
            if not request.flag("force"):
                raise APIError(404, f"get {name}: no such volume") from None
        return no_content()

    @router.route("POST", "/volumes/prune")
    def prune(request: Request) -> Response:
        filters = request_filters(request, ("label", "all"))
        everything = bool_filter(filters, "all")
        deleted, reclaimed = [], 0
        for volume in selected(request, ("label", "all")):
            if volumes.users(volume.name) or not (everything or ANONYMOUS_LABEL in volume.labels):
                continue
            with contextlib.suppress(VolumeNotFound, Conflict):  # gone or taken meanwhile
                used = volumes.usage(volume.name).allocated
                engine.volume_remove(volume.name)
                deleted.append(volume.name)
                reclaimed += used
        return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})
