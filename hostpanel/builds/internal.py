"""The internal API's build door for host agents (issue 15: they hold no database).

Each endpoint takes the host token (hosts/internal.py) and a build placed on the calling host only:
another host's build, or one that does not exist, is a 404 that changes nothing.

- ``POST builds/<id>/claim``: queued -> running; answers the plain spec (:class:`spec.BuildSpec`).
  A build that is not queued is a 409. A build from a directory or git repository (``context_path``,
  ``git_url``) is handed as the panel checked it: the agent checks it again under its own settings'
  roots, symlinks resolved, before it reads the host's disk (:mod:`hostpanel.agent.build_runner`).
- ``GET builds/<id>/context``: the context upload of a running build (a tar).
- ``POST builds/<id>/output``: ``{"lines": [{"stream", "text"}, ...]}`` (bounded), stored on the row
  and published to the live stream, numbered by the panel.
- ``POST builds/<id>/image``: the exported image tar as the body, stored with
  :func:`services.store_build_image` under the build's own tenant and name (never one the host names).
- ``POST builds/<id>/finish``: ``{"error": "..."}`` (empty: succeeded, which needs the image first).

Output, image and finish need a running build: one failed meanwhile (its host marked down) is a 409
and stays failed.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import FileResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.builds.spec import LINE_MAX, STORED_LINES
from hostpanel.errors import Conflict, InvalidRequest
from hostpanel.hosts.internal import HostView, StrictCharField, refuse_unknown, valid_body
from hostpanel.images.services import MAX_UPLOAD_BYTES

MAX_LINES = 500  # output lines of one post
ERROR_MAX = 4000
STREAMS = ("step", "info", "stdout", "stderr", "error")


def _build(request: Request, build_id: int, *, running: bool = True) -> Build:
    """The caller's own build ``build_id`` (404 otherwise); with ``running``, a 409 unless it runs."""
    build = Build.objects.filter(pk=build_id, host=request.user).select_related("tenant", "host").first()
    if build is None:
        raise NotFound(f"No such build on this host: {build_id}")
    if running and build.status != Build.Status.RUNNING:
        raise Conflict(f"build {build_id} is {build.status}, not running")
    return build


class Claim(HostView):
    def post(self, request: Request, build_id: int) -> Response:
        refuse_unknown(request.data, set(), "claim")
        build = _build(request, build_id, running=False)
        if not services.claim_build(build):
            raise Conflict(f"build {build_id} is {build.status}, not queued")
        return Response(services.spec_of(build).to_dict())


class Context(HostView):
    def get(self, request: Request, build_id: int) -> FileResponse:
        build = _build(request, build_id)
        if not build.context_archive:
            raise NotFound(f"build {build_id} has no context upload")
        try:
            return FileResponse(open(build.context_archive, "rb"), content_type="application/x-tar")
        except FileNotFoundError:
            raise NotFound(f"the context upload of build {build_id} is gone") from None


class LineSerializer(serializers.Serializer):
    stream = serializers.ChoiceField(choices=STREAMS)
    text = StrictCharField(max_length=LINE_MAX, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(data, set(self.fields), "lines")
        return super().to_internal_value(data)


class OutputSerializer(serializers.Serializer):
    lines = LineSerializer(many=True, max_length=MAX_LINES, allow_empty=False)


class Output(HostView):
    def post(self, request: Request, build_id: int) -> Response:
        body = valid_body(request, OutputSerializer, "output")
        _build(request, build_id)
        with transaction.atomic():
            build = Build.objects.select_for_update().filter(pk=build_id, status=Build.Status.RUNNING).first()
            if build is None:
                raise Conflict(f"build {build_id} is not running")
            first = int(services.next_cursor(build.output))
            lines = [
                {"cursor": str(first + i), "stream": line["stream"], "text": line["text"]}
                for i, line in enumerate(body["lines"])
            ]
            build.output = [*build.output, *lines][-STORED_LINES:]
            build.save(update_fields=["output"])
            transaction.on_commit(lambda: services.publish_quietly(str(build_id), lines))
        return Response({"stored": len(lines)})


class ImageUpload(HostView):
    def post(self, request: Request, build_id: int) -> Response:
        build = _build(request, build_id)
        try:
            size = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            size = 0
        if size <= 0 or size > MAX_UPLOAD_BYTES:
            raise InvalidRequest(
                f"image: give the exported image tar as the body (Content-Length 1 to {MAX_UPLOAD_BYTES})"
            )
        image = services.store_build_image(build, request._request)
        if not Build.objects.filter(pk=build.pk, status=Build.Status.RUNNING).update(image=image):
            raise Conflict(f"build {build_id} is not running")
        return Response({"image": image.reference})


class FinishSerializer(serializers.Serializer):
    error = StrictCharField(max_length=ERROR_MAX, allow_blank=True, trim_whitespace=False)


class Finish(HostView):
    def post(self, request: Request, build_id: int) -> Response:
        body = valid_body(request, FinishSerializer, "finish")
        build = _build(request, build_id)
        if not body["error"] and build.image_id is None:
            raise Conflict(f"build {build_id}: upload its image before finishing it as succeeded")
        if not services.finish_build(build, body["error"]):
            raise Conflict(f"build {build_id} is not running")
        _ended(build)
        build.refresh_from_db()
        return Response({"status": build.status})


def _ended(build: Build) -> None:
    """A build of this host ended: its stream's counters go, the tenant's next build is sent."""
    services.forget_stream(str(build.pk))
    if build.host is not None:
        services.dispatch_builds(build.host)


urlpatterns = [
    path("builds/<int:build_id>/claim", Claim.as_view(), name="internal-build-claim"),
    path("builds/<int:build_id>/context", Context.as_view(), name="internal-build-context"),
    path("builds/<int:build_id>/output", Output.as_view(), name="internal-build-output"),
    path("builds/<int:build_id>/image", ImageUpload.as_view(), name="internal-build-image"),
    path("builds/<int:build_id>/finish", Finish.as_view(), name="internal-build-finish"),
]
