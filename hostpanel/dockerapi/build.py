"""The classic ``POST /build`` for tenants, through the panel's builds service.

The tar context in the body is spooled (bounded by ``HOSTPANEL_BUILD_MAX_CONTEXT_BYTES``) and
handed to :func:`hostpanel.builds.services.start_build` as an upload: the build is queued on a host
that is up, runs there in the tenant's user namespace within its build time limit and fair share
of build slots, and the host unpacks the context with :func:`engine.build.upload.unpack_context`
(no member lands outside the context; the builder never follows a symlink out of it). The
door streams the Build row's output as ``{"stream": ...}`` lines while it runs and ends with
``{"aux": {"ID": ...}}`` and the ``Successfully built/tagged`` lines docker-py and compose read
(the operator socket's :func:`engine.dockerapi.build.closing_messages`), or with the build's error.

The image is the tenant's ``<slug>/<name>:<tag>`` (``-t name`` or ``-t <slug>/name``); further
``-t`` names are tags of it (the images service). Options are checked by the operator socket's
:func:`engine.dockerapi.build.check_options` (403 naming what changes a RUN step's reach); image
labels (``--label``) and a build without ``-t`` are a 400 (the builds service has neither).
A client that leaves does not stop the build (the builds service has no cancel): it ends within
the tenant's time limit and its image is the tenant's as any other build's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from typing import IO

from django.conf import settings
from django.db import connections

from engine.dockerapi.build import (
    check_options,
    closing_messages,
    dockerfile_path,
    registry_logins,
    string_map,
)
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, json_response
from engine.dockerapi.progress import Emit, Message, streamed
from hostpanel.builds import services as builds
from hostpanel.builds.models import Build
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.imagenames import image_id
from hostpanel.dockerapi.images import own_name
from hostpanel.dockerapi.lookup import identity_of
from hostpanel.errors import ServiceError
from hostpanel.images import services as images
from hostpanel.tenants.models import Role

POLL_SECONDS = 0.3
_DISCARD_MAX = 64 * 1024 * 1024


def register(router: Router) -> None:
    """Add ``POST /build`` of the tenants' door to ``router``."""
    router.add("POST", "/build", translated(build_image))


def spool(request: Request) -> IO[bytes] | Response:
    """The body in a temporary file, or the 413 answer (read to the end first, up to a bound, so
    the client reads the answer rather than a reset connection)."""
    limit = int(settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES)
    spooled = tempfile.TemporaryFile()  # noqa: SIM115 (returned open to the caller)
    size = 0
    try:
        for chunk in request.body_chunks(limit + _DISCARD_MAX):
            size += len(chunk)
            if size <= limit:
                spooled.write(chunk)
    except APIError as exc:
        spooled.close()
        return json_response({"message": exc.message}, exc.status, headers={"Connection": "close"})
    if size > limit:
        spooled.close()
        raise APIError(
            413, f"the build context is larger than {limit} bytes (HOSTPANEL_BUILD_MAX_CONTEXT_BYTES)"
        )
    spooled.seek(0)
    return spooled


def build_image(request: Request) -> Stream | Response:
    """``POST /build?t=&dockerfile=&buildargs=&target=&nocache=``: see the module docstring."""
    identity = identity_of(request)
    check_options(request.query)
    registry_logins(request.headers.get("X-Registry-Config"))  # base images are the panel's own
    tags = [t for t in request.query.get("t", []) if t]
    if not tags:
        raise APIError(400, "give the image a name (docker build -t NAME): the panel keeps named images only")
    names = []
    for tag in tags:
        repo, _, version = tag.rpartition(":") if ":" in tag.rpartition("/")[2] else (tag, "", "")
        names.append(own_name(identity, repo, version))
    if string_map(request.json_arg("labels"), "labels"):
        raise APIError(
            400, "image labels (--label) are not supported by the panel's builds yet; leave them out"
        )
    dockerfile = str(dockerfile_path(request.arg("dockerfile")))
    build_args = string_map(request.json_arg("buildargs"), "buildargs")
    identity.require(Role.DEVELOPER, "building an image", "build.start")
    spooled = spool(request)
    if isinstance(spooled, Response):
        return spooled
    with spooled:
        build = builds.start_build(
            identity.actor,
            identity.tenant,
            name=names[0],
            context=spooled,
            dockerfile=dockerfile,
            build_args=build_args,
            target=request.arg("target"),
            no_cache=request.flag("nocache"),
        )
    quiet = request.flag("q")

    def work(emit: Emit) -> list[Message]:
        try:
            if not quiet:  # the answer's headers go out now: a failure is told in the stream, as docker does
                host = build.host.name if build.host else "a host"
                emit({"stream": f"build {build.pk} of {build.reference} queued on host {host}\n"})
            done = follow(build.pk, None if quiet else emit)
            if done.status != Build.Status.SUCCEEDED or done.image is None:
                raise APIError(400, done.error or f"the build ended {done.status}")
            for name in names[1:]:
                try:
                    images.tag_image(identity.actor, identity.tenant, done.image, name)
                except ServiceError as exc:
                    raise APIError(exc.status, exc.message) from None
            return closing_messages(
                image_id(done.image), [f"{identity.tenant.slug}/{n}" for n in names], quiet=quiet
            )
        finally:
            connections.close_all()

    return streamed(work, name="door-build", connection=request.connection)


def follow(build_id: int, emit: Emit | None) -> Build:
    """Poll the Build row until it ends, passing each new output line to ``emit``."""
    seen = 0
    while True:
        build = Build.objects.select_related("image").get(pk=build_id)
        for line in new_lines(build.output, seen):
            seen = int(line.get("cursor") or seen + 1)
            if emit is not None and line.get("stream") != "error":
                emit({"stream": line.get("text", "").rstrip("\n") + "\n"})
        if build.status in (Build.Status.SUCCEEDED, Build.Status.FAILED):
            return build
        time.sleep(POLL_SECONDS)


def new_lines(output: list[dict[str, str]], seen: int) -> Iterator[dict[str, str]]:
    """The stored lines after cursor ``seen`` (lines keep their cursor: the row keeps the last ones)."""
    for line in output:
        cursor = line.get("cursor", "")
        if cursor.isdigit() and int(cursor) <= seen:
            continue
        yield line
