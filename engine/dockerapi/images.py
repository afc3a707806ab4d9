"""Image endpoints: list, inspect, history, tag, remove, prune.

Pull and push are in :mod:`engine.dockerapi.transfer`, build in :mod:`engine.dockerapi.build`.
The operator's socket has operator rights: it sees every image and its tags are base tags.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from engine.dockerapi.filters import bool_filter, labels_match, request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, json_response, no_content
from engine.errors import ImageNotFound
from engine.images.model import Image
from engine.images.oci import parse_created, parse_manifest
from engine.images.reference import split_tag

if TYPE_CHECKING:
    from engine.engine import Engine

_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "Volumes", "WorkingDir")
_CONFIG_KEYS_AFTER = ("Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell")
_OMITTED_WHEN_EMPTY = {"Healthcheck", "StopSignal", "Shell"}


def unix_time(iso: str) -> int:
    """An OCI ``created`` time as Unix seconds (0 when unknown)."""
    moment = parse_created(iso)
    return int(moment.timestamp()) if moment else 0


def image_summary(image: Image, containers: int = 0) -> dict[str, Any]:
    """One entry of ``GET /images/json``."""
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": list(image.repo_tags),
        "RepoDigests": [],
        "Created": unix_time(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "Labels": dict(image.config.labels),
        "Containers": containers,
    }


def container_config(config: dict[str, Any]) -> dict[str, Any]:
    """An OCI image config's ``config`` section as Docker's inspect shows it (absent lists are null)."""
    shown: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Image": "",
    }
    for key in _CONFIG_KEYS + _CONFIG_KEYS_AFTER:
        if key not in _OMITTED_WHEN_EMPTY or config.get(key):
            shown[key] = config.get(key)
    shown["User"] = shown["User"] or ""
    shown["WorkingDir"] = shown["WorkingDir"] or ""
    return shown


def image_inspect(image: Image, raw: dict[str, Any]) -> dict[str, Any]:
    """``GET /images/{name}/json`` for ``image`` and its raw OCI config ``raw``."""
    config = container_config(raw.get("config") or {})
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": image.created,
        "DockerVersion": "",
        "Author": raw.get("author", ""),
        "Config": config,
        # API <= 1.44 still has the (deprecated) build container's fields; compose 1.x reads
        # ContainerConfig.Volumes when it recreates a container
        "Container": "",
        "ContainerConfig": container_config({}),
        "Architecture": raw.get("architecture", ""),
        "Os": raw.get("os", ""),
        "Size": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(image.layers)},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def image_history(image: Image, raw: dict[str, Any], layer_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """``GET /images/{name}/history``: newest step first; each step that made a layer has its size."""
    sizes = iter(layer_sizes)
    steps = []
    for entry in raw.get("history") or []:
        size = 0 if entry.get("empty_layer") else next(sizes, 0)
        steps.append(
            {
                "Id": "<missing>",
                "Created": unix_time(entry.get("created", "")),
                "CreatedBy": entry.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": entry.get("comment", ""),
            }
        )
    if not steps:
        steps.append({"Id": "", "Created": unix_time(image.created), "CreatedBy": "", "Size": image.size})
        steps[0].update(Tags=None, Comment="")
    steps.reverse()
    steps[0]["Id"] = image.id
    steps[0]["Tags"] = list(image.repo_tags) or None
    return steps


def removal_report(lines: Sequence[str]) -> list[dict[str, str]]:
    """The store's ``Untagged: x`` / ``Deleted: sha256:..`` lines as Docker's removal answer."""
    report = []
    for line in lines:
        what, _, subject = line.partition(": ")
        report.append({what: subject})
    return report


def tag_matches(tag: str, pattern: str) -> bool:
    """The ``reference`` filter of ``docker images PATTERN``: ``name`` or ``name:tag``, with wildcards."""
    if ":" in pattern.rpartition("/")[2]:
        return fnmatchcase(tag, pattern)
    return fnmatchcase(split_tag(tag)[0], pattern)


@contextlib.contextmanager
def image_lookup(name: str) -> Iterator[None]:
    """Turn the store's ImageNotFound into Docker's ``No such image: NAME`` 404."""
    try:
        yield
    except ImageNotFound:
        raise APIError(404, f"No such image: {name}") from None


def register(router: Router, engine: Engine) -> None:
    """Add the image endpoints for ``engine`` to ``router``."""
    store = engine.images

    @router.route("GET", "/images/json")
    def list_images(request: Request) -> Response:
        filters = request_filters(request, ("dangling", "label", "reference"))
        dangling = bool_filter(filters, "dangling")
        users = Counter(c.image_id for c in engine.list(all=True))
        shown = []
        for image in store.list():
            if dangling is not None and dangling != (not image.repo_tags):
                continue
            if not labels_match(image.config.labels, filters.get("label", [])):
                continue
            patterns = filters.get("reference")
            if patterns:  # like docker, only the matching tags are listed
                tags = tuple(t for t in image.repo_tags if any(tag_matches(t, p) for p in patterns))
                if not tags:
                    continue
                image = replace(image, repo_tags=tags)
            shown.append(image_summary(image, users[image.id]))
        return json_response(shown)

    @router.route("GET", "/images/{name:path}/json")
    def inspect_image(request: Request) -> Response:
        name = request.params["name"]
        with image_lookup(name):
            data = store.inspect(name)
            image = store.resolve(data["id"])
        return json_response(image_inspect(image, data["oci_config"]))

    @router.route("GET", "/images/{name:path}/history")
    def history(request: Request) -> Response:
        name = request.params["name"]
        with image_lookup(name):
            data = store.inspect(name)
            image = store.resolve(data["id"])
        manifest = parse_manifest(store.blobs.read_bytes(image.digest))
        return json_response(image_history(image, data["oci_config"], [la.size for la in manifest.layers]))

    @router.route("POST", "/images/{name:path}/tag")
    def tag(request: Request) -> Response:
        name, repo = request.params["name"], request.arg("repo")
        if not repo:
            raise APIError(400, "repository name (repo) must be given: docker tag SOURCE REPOSITORY[:TAG]")
        with image_lookup(name):
            store.tag(name, f"{repo}:{request.arg('tag') or 'latest'}")
        return no_content(201)

    @router.route("DELETE", "/images/{name:path}")
    def remove(request: Request) -> Response:
        name = request.params["name"]
        with image_lookup(name):
            lines = store.remove(name, force=request.flag("force"), in_use=engine.image_ids_in_use())
        return json_response(removal_report(lines))

    @router.route("POST", "/images/prune")
    def prune(request: Request) -> Response:
        filters = request_filters(request, ("dangling",))
        dangling = bool_filter(filters, "dangling")
        removed = store.prune(all=dangling is False, in_use=engine.image_ids_in_use())
        report: list[dict[str, str]] = []
        for image in removed:
            report += [{"Untagged": t} for t in image.repo_tags] + [{"Deleted": image.id}]
        return json_response(
            {"ImagesDeleted": report or None, "SpaceReclaimed": sum(i.size for i in removed)}
        )
