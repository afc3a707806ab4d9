"""``/volumes/...`` for tenants: the panel's volumes service in Docker's shapes.

Names are the tenant's (unique per tenant: two tenants can each have ``data``); another tenant's
volume is ``No such volume``. Create goes through :func:`hostpanel.volumes.services.create_volume`
(the volume count and storage quotas, the audit log); its size cap is ``-o size=`` or
``HOSTPANEL_DOCKER_API_VOLUME_BYTES``. The body is parsed by the operator socket's
:func:`engine.dockerapi.volumes.parse_create` (``type``/``device``/``o`` options are a 403 naming
them). A volume lives on the host of the container that mounts it, so ``Mountpoint`` is empty.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable
from typing import Any

from django.conf import settings

from engine.dockerapi.filters import bool_filter, request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, json_response, no_content
from engine.dockerapi.volumes import ANONYMOUS_LABEL, parse_create, volume_selected
from hostpanel.deployments.models import App
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.lookup import identity_of
from hostpanel.errors import Conflict
from hostpanel.tenants.models import Role, Tenant
from hostpanel.volumes import services as volumes
from hostpanel.volumes.models import VOLUME_NAME_RE, Volume

_NAME_CHARS = "lowercase letters, digits, '_' and '-' (at most 63, starting with a letter or digit)"


def volume_json(volume: Volume, usage: tuple[int, int] | None = None) -> dict[str, Any]:
    """A tenant's volume as Docker shows it; ``usage`` (size, containers) adds ``UsageData``."""
    data: dict[str, Any] = {
        "Name": volume.name,
        "Driver": "local",
        "Mountpoint": "",
        "CreatedAt": volume.created_at.isoformat(),
        "Labels": dict(volume.labels),
        "Scope": "local",
        "Options": {"size": str(volume.size_bytes)},
    }
    if usage is not None:
        data["UsageData"] = {"Size": usage[0], "RefCount": usage[1]}
    return data


def users_of(tenant: Tenant) -> dict[str, int]:
    """How many of the tenant's apps mount each volume now."""
    count: dict[str, int] = {}
    for app in App.objects.filter(tenant=tenant).select_related("current_release"):
        for mount in app.current_release.volumes if app.current_release else []:
            count[mount["name"]] = count.get(mount["name"], 0) + 1
    return count


def find_volume(identity: Identity, name: str) -> Volume:
    """The tenant's volume ``name``; 404 ``No such volume`` otherwise (another tenant's too)."""
    volume = Volume.objects.filter(tenant=identity.tenant, name=name).first()
    if volume is None:
        raise APIError(404, f"No such volume: {name}")
    return volume


def register(router: Router) -> None:
    """Add the volume endpoints of the tenants' door to ``router``."""
    routes: list[tuple[str, str, Callable[[Request], Any]]] = [
        ("POST", "/volumes/create", create_volume),
        ("GET", "/volumes", list_volumes),
        ("POST", "/volumes/prune", prune_volumes),
        ("GET", "/volumes/{name}", inspect_volume),
        ("DELETE", "/volumes/{name}", remove_volume),
    ]
    for method, pattern, handler in routes:
        router.add(method, pattern, translated(handler))


def create_volume(request: Request) -> Response:
    """``POST /volumes/create``: a new volume of the tenant (an existing one of that name is answered)."""
    identity = identity_of(request)
    identity.require(Role.DEVELOPER, "creating a volume", "volume.create")
    body = request.json()
    if isinstance(body, dict) and not body.get("Name"):
        body = {**body, "Name": secrets.token_hex(16)}
    try:
        name, size, labels = parse_create(body)
    except APIError as exc:
        if exc.status == 403:
            identity.denied("volume.create", exc.message)
        raise
    if not re.match(VOLUME_NAME_RE, name):
        raise APIError(400, f"create {name}: a volume name is {_NAME_CHARS}")
    existing = Volume.objects.filter(tenant=identity.tenant, name=name).first()
    if existing is not None:  # like docker: creating an existing volume answers it
        return json_response(volume_json(existing), 201)
    size = size or settings.HOSTPANEL_DOCKER_API_VOLUME_BYTES
    volume = volumes.create_volume(identity.actor, identity.tenant, name, size, labels)
    return json_response(volume_json(volume), 201)


def selected(identity: Identity, filters: dict[str, list[str]]) -> list[Volume]:
    """The tenant's volumes matching ``filters`` (name, label, dangling, driver)."""
    users = users_of(identity.tenant)
    return [
        volume
        for volume in Volume.objects.filter(tenant=identity.tenant).order_by("name")
        if volume_selected(volume.name, volume.labels, bool(users.get(volume.name)), filters)
    ]


def list_volumes(request: Request) -> Response:
    """``GET /volumes``: the tenant's volumes."""
    identity = identity_of(request)
    filters = request_filters(request, ("name", "label", "dangling", "driver"))
    return json_response({"Volumes": [volume_json(v) for v in selected(identity, filters)], "Warnings": []})


def inspect_volume(request: Request) -> Response:
    """``GET /volumes/{name}``."""
    return json_response(volume_json(find_volume(identity_of(request), request.params["name"])))


def remove_volume(request: Request) -> Response:
    """``DELETE /volumes/{name}``: through the volumes service (never under a container, even forced)."""
    identity = identity_of(request)
    name = request.params["name"]
    volume = Volume.objects.filter(tenant=identity.tenant, name=name).first()
    if volume is None:
        if request.flag("force"):
            return no_content()
        raise APIError(404, f"No such volume: {name}")
    identity.require(Role.DEVELOPER, "removing a volume", "volume.delete", volume)
    try:
        volumes.delete_volume(identity.actor, volume)
    except Conflict as exc:
        raise APIError(409, f"remove {name}: volume is in use - {exc.message}") from None
    return no_content()


def prune_volumes(request: Request) -> Response:
    """``POST /volumes/prune``: the tenant's unused anonymous volumes (``all=true``: every unused one)."""
    identity = identity_of(request)
    filters = request_filters(request, ("label", "all"))
    identity.require(Role.DEVELOPER, "pruning volumes", "volume.delete")
    everything = bool_filter(filters, "all")
    users = users_of(identity.tenant)
    deleted, reclaimed = [], 0
    for volume in selected(identity, {"label": filters.get("label", [])}):
        if users.get(volume.name) or not (everything or ANONYMOUS_LABEL in volume.labels):
            continue
        with contextlib.suppress(Conflict):  # mounted meanwhile
            volumes.delete_volume(identity.actor, volume)
            deleted.append(volume.name)
            reclaimed += volume.size_bytes
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})
