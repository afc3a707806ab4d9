"""``/images/...`` for tenants: the panel's images service as Docker shows images.

A tenant sees its own images (``<slug>/<name>:<tag>``, built, uploaded or pushed to the panel's
registry) and the operator's base images, as :func:`hostpanel.images.services.available_images`
lists them. A name is looked up in that set only (own ``<slug>/<name>`` first, so ``docker run x``
after ``docker build -t x`` runs the tenant's ``<slug>/x``; the panel registry's host prefix is
dropped), so another tenant's image is ``No such image``. The JSON is the operator socket's
(:mod:`engine.dockerapi.images`); an image's id is the sha256 of its stored archive (tags of one
archive are one image), or of its reference when the panel holds no archive of it.

Pull (``POST /images/create``) changes nothing the panel does not have: it answers for the
tenant's own repositories in the panel's registry (``<registry>/<slug>/<name>:<tag>``, made
deployable as a push does) and for the images already available; any other registry is a 403
saying where to push instead (the panel's images service has no remote pulls for tenants).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from engine.dockerapi.filters import bool_filter, labels_match, request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, json_response, no_content
from engine.dockerapi.images import image_inspect, image_summary, tag_matches
from engine.errors import InvalidReference
from engine.images.model import Image as EngineImage
from engine.images.model import ImageConfig
from engine.images.reference import looks_like_domain, normalize_tag, split_tag
from hostpanel.audit.services import audited
from hostpanel.deployments.models import App
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.imagenames import find_image, image_id, registry_host, visible, without_registry
from hostpanel.dockerapi.lookup import identity_of
from hostpanel.errors import Forbidden, InvalidRequest
from hostpanel.images import services as images
from hostpanel.images.models import Image
from hostpanel.registry import images as registry_images
from hostpanel.registry.services import pull_source
from hostpanel.tenants.models import Role, Tenant


def engine_view(rows: list[Image]) -> EngineImage:
    """Rows of one id as the engine's image (for the operator socket's JSON shapers)."""
    first = rows[0]
    return EngineImage(
        id=image_id(first),
        digest="",
        repo_tags=tuple(r.reference for r in rows),
        created=first.created_at.isoformat(),
        size=first.size,
        layers=(),
        config=ImageConfig(),
    )


def grouped(tenant: Tenant) -> list[list[Image]]:
    """The visible images, the tags of one id together (newest first)."""
    groups: dict[str, list[Image]] = {}
    for image in visible(tenant).order_by("-created_at", "reference"):
        groups.setdefault(image_id(image), []).append(image)
    return list(groups.values())


def users_of(tenant: Tenant) -> Counter[str]:
    """How many of the tenant's apps run each reference now."""
    return Counter(
        App.objects.filter(tenant=tenant, current_release__isnull=False).values_list(
            "current_release__image", flat=True
        )
    )


# ---- handlers ---------------------------------------------------------------------------
def register(router: Router) -> None:
    """Add the image endpoints of the tenants' door to ``router``."""
    routes: list[tuple[str, str, Callable[[Request], Any]]] = [
        ("GET", "/images/json", list_images),
        ("POST", "/images/create", pull),
        ("GET", "/images/{name:path}/json", inspect_image),
        ("POST", "/images/{name:path}/tag", tag_image),
        ("DELETE", "/images/{name:path}", remove_image),
    ]
    for method, pattern, handler in routes:
        router.add(method, pattern, translated(handler))


def summaries(tenant: Tenant, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """``GET /images/json``'s entries for ``tenant`` (``reference``/``label``/``dangling`` filters)."""
    filters = filters or {}
    dangling = bool_filter(filters, "dangling")
    users = users_of(tenant)
    shown: list[dict[str, Any]] = []
    if dangling:  # every image the panel keeps has a name
        return shown
    for rows in grouped(tenant):
        patterns = filters.get("reference")
        if patterns:
            rows = [r for r in rows if any(tag_matches(r.reference, p) for p in patterns)]
            if not rows:
                continue
        if not labels_match({}, filters.get("label", [])):
            continue
        shown.append(image_summary(engine_view(rows), sum(users[r.reference] for r in rows)))
    return shown


def list_images(request: Request) -> Response:
    """``GET /images/json``: the tenant's own images and the base images."""
    identity = identity_of(request)
    return json_response(
        summaries(identity.tenant, request_filters(request, ("dangling", "label", "reference")))
    )


def inspect_image(request: Request) -> Response:
    """``GET /images/{name}/json`` (the panel keeps no image config: Config's fields are empty)."""
    identity = identity_of(request)
    image = find_image(identity.tenant, request.params["name"])
    rows = [i for i in visible(identity.tenant) if image_id(i) == image_id(image)]
    document = image_inspect(engine_view(rows), {"architecture": "amd64", "os": "linux"})
    return json_response(document)


def own_name(identity: Identity, repo: str, tag: str) -> str:
    """``repo:tag`` as a name in the tenant's namespace (``<name>:<tag>``); 403 for another's."""
    try:  # the CLI sends docker.io/library/<name> for a bare name
        repo = split_tag(normalize_tag(without_registry(repo)))[0]
    except InvalidReference as exc:
        raise APIError(400, f"invalid reference format: {exc}") from None
    slug = identity.tenant.slug
    first, sep, rest = repo.partition("/")
    if sep:
        if first != slug:
            raise APIError(
                403,
                f"image names of tenant {slug!r} are <name> or {slug}/<name>: {repo!r} is outside"
                " your namespace",
            )
        repo = rest
    name = f"{repo}:{tag or 'latest'}"
    try:
        images.check_image_name(name)
    except InvalidRequest as exc:
        raise APIError(400, f"invalid reference format: {exc.message}") from None
    return name


def tag_image(request: Request) -> Response:
    """``POST /images/{name}/tag?repo=&tag=``: a new name in the tenant's namespace for its image."""
    identity = identity_of(request)
    source = find_image(identity.tenant, request.params["name"])
    repo = request.arg("repo")
    if not repo:
        raise APIError(400, "repository name (repo) must be given: docker tag SOURCE REPOSITORY[:TAG]")
    name = own_name(identity, repo, request.arg("tag"))
    identity.require(Role.DEVELOPER, "tagging an image", "image.tag", source)
    images.tag_image(identity.actor, identity.tenant, source, name)
    return no_content(201)


def remove_image(request: Request) -> Response:
    """``DELETE /images/{name}``: untag (and, with the last tag, delete) the tenant's own image."""
    identity = identity_of(request)
    name = request.params["name"]
    image = find_image(identity.tenant, name)
    if image.is_base:
        message = (
            f"{image.reference} is one of the operator's base images: it cannot be removed through"
            f" tenant {identity.tenant.slug!r}'s door"
        )
        identity.denied("image.delete", message, image)
        raise APIError(403, message)
    identity.require(Role.DEVELOPER, "removing an image", "image.delete", image)
    ident = image_id(image)
    same = [i for i in visible(identity.tenant) if image_id(i) == ident]
    by_id = without_registry(name).removeprefix("sha256:") in ident and ":" not in name.removeprefix(
        "sha256:"
    )
    doomed = same if by_id else [image]
    if by_id and len(same) > 1 and not request.flag("force"):
        raise APIError(
            409,
            f"conflict: unable to delete {ident[7:19]} (must be forced) - image is referenced in"
            " multiple repositories",
        )
    report: list[dict[str, str]] = []
    for row in doomed:
        images.delete_image(identity.actor, row)
        report.append({"Untagged": row.reference})
    if len(doomed) == len(same):
        report.append({"Deleted": ident})
    return json_response(report)


# ---- pull -------------------------------------------------------------------------------
def registry_auth(header: str | None) -> dict[str, Any]:
    """``X-Registry-Auth`` (base64url JSON) decoded; the door's identity decides access, so the
    credentials are only checked to be well-formed (400 otherwise)."""
    if not header:
        return {}
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        raise APIError(400, "X-Registry-Auth is not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        raise APIError(400, "X-Registry-Auth must encode a JSON object")
    return doc


def pull(request: Request) -> Stream:
    """``POST /images/create?fromImage=&tag=``: see the module docstring."""
    identity = identity_of(request)
    if request.arg("fromSrc"):
        raise APIError(400, "docker import is not available to tenants: build or push your image instead")
    registry_auth(request.headers.get("X-Registry-Auth"))
    wanted = request.arg("fromImage")
    tag = request.arg("tag")
    if not wanted:
        raise APIError(400, "fromImage must be given: docker pull NAME[:TAG]")
    if tag and not tag.startswith("sha256:"):
        wanted = f"{wanted}:{tag}"
    elif tag:
        wanted = f"{wanted}@{tag}"
    try:
        normalized = normalize_tag(wanted)
    except InvalidReference as exc:
        raise APIError(400, f"invalid reference format: {exc}") from None
    first = normalized.split("/", 1)[0]
    panel = registry_host()
    slug = identity.tenant.slug
    if "/" in normalized and looks_like_domain(first) and first.lower() != panel:
        raise APIError(
            403,
            f"pulling from {first} is not available to tenants: push the image to the panel's registry"
            f" as {panel}/{slug}/<name>:<tag> and pull it from there, or use a base image",
        )
    local = without_registry(normalized)
    if first.lower() == panel:
        if not local.startswith(f"{slug}/") or pull_source(local) is None:
            raise APIError(
                404,
                f"pull access denied for {wanted.rsplit(':', 1)[0]}, repository does not exist or may"
                " require 'docker login'",
            )
        return _pull_from_registry(identity, normalized, local)
    try:
        image = find_image(identity.tenant, local)
    except APIError:
        raise APIError(
            403,
            f"{normalized} is neither one of your images nor a base image: push the image to the"
            f" panel's registry as {panel}/{slug}/<name>:<tag> and pull it from there, or ask the"
            " operator for a base image",
        ) from None
    return _answer([], normalized, image, fresh=False)


def _pull_from_registry(identity: Identity, wanted: str, local: str) -> Stream:
    source = pull_source(local)
    assert source is not None
    identity.require(Role.VIEWER, "pulling an image", "image.pull")
    image = visible(identity.tenant).filter(reference=local).first()
    fresh = image is None
    if image is None:  # pushed before the registry published pushes: make it deployable now
        identity.require(Role.DEVELOPER, "pulling a new image", "image.pull")
        with audited(identity.actor, "image.pull", identity.tenant) as entry:
            image = registry_images.publish_image(
                identity.actor, identity.tenant, source.repository, source.tag
            )
            if image is None:
                raise Forbidden(f"{local} is another owner's image name")
            entry.obj = image
    progress: list[dict[str, Any]] = [
        {"status": f"Pulling from {source.repository}", "id": source.tag},
        {"status": f"Digest: {source.digest}"},
    ]
    return _answer(progress, wanted, image, fresh=fresh)


def _answer(progress: list[dict[str, Any]], wanted: str, image: Image, *, fresh: bool) -> Stream:
    """The pull's progress lines, ending as docker's do (the CLI prints the last status)."""
    said = "Downloaded newer image" if fresh else "Image is up to date"
    lines = [*progress, {"status": f"Status: {said} for {wanted}"}]
    return Stream(iter([json.dumps(m).encode() + b"\n" for m in lines]))
