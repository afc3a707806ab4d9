"""HTTP endpoints of the OCI Distribution Spec at /v2/ (plain Django views; rules in services.py).

One dispatcher routes ``/v2/<name>/{blobs,manifests,tags}/...`` because
repository names contain slashes. Every answer carries
``Docker-Distribution-API-Version: registry/2.0``; errors are
``{"errors": [{"code", "message", "detail"}]}``; a missing or wrong
credential is 401 with a Bearer challenge pointing at ``/v2/token``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from engine.errors import EngineError
from hostpanel.registry import services, storage
from hostpanel.registry.auth import SERVICE, Principal, authenticate_request, issue_bearer
from hostpanel.registry.errors import RegistryError, Unauthorized, Unsupported

log = logging.getLogger(__name__)
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
_BYTES_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")

_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), "uploads"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)$"), "upload"),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$"), "blob"),
    (re.compile(r"^(?P<name>.+)/manifests/(?P<reference>[^/]+)$"), "manifest"),
    (re.compile(r"^(?P<name>.+)/tags/list$"), "tags"),
]


class BlobResponse(FileResponse):
    block_size = 1 << 20


# ---- helpers ------------------------------------------------------------------------------
def _error_response(request: HttpRequest, exc: RegistryError, scope: str | None) -> HttpResponse:
    body = {"errors": [{"code": exc.code, "message": exc.message, "detail": exc.details or None}]}
    response = JsonResponse(body, status=exc.status)
    for key, value in exc.headers.items():
        response[key] = value
    if isinstance(exc, Unauthorized):
        challenge = f'Bearer realm="{request.build_absolute_uri("/v2/token")}",service="{SERVICE}"'
        wanted = exc.details.get("scope") or scope
        if wanted:
            challenge += f',scope="{wanted}"'
        if exc.details.get("insufficient_scope"):
            challenge += ',error="insufficient_scope"'
        response["WWW-Authenticate"] = challenge
    if request.method == "HEAD":
        response["Content-Length"] = "0"
        response.content = b""
    return response


def _content_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH")
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise RegistryError("Content-Length is not a number") from None


def _principal(request: HttpRequest) -> Principal:
    principal = authenticate_request(request)
    if principal is None:
        raise Unauthorized("authentication required: log in with a panel API token as the password")
    return principal


def _scope_for(name: str | None, method: str) -> str | None:
    if not name:
        return None
    actions = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "pull,push")
    return f"repository:{name}:{actions}"


def _empty(status: int, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    response["Content-Length"] = "0"
    return response


# ---- the dispatcher -----------------------------------------------------------------------
@csrf_exempt
def v2(request: HttpRequest, path: str = "") -> HttpResponse:
    """Route one /v2/ request and answer errors in the spec's format."""
    handler: Callable[..., HttpResponse] | None = None
    kwargs: dict[str, str] = {}
    if path in ("", "/"):
        handler = _base
    elif path == "token":
        handler = _token
    else:
        for pattern, kind in _ROUTES:
            match = pattern.match(path)
            if match:
                handler, kwargs = _HANDLERS[kind], match.groupdict()
                break
    try:
        if handler is None:
            raise _NotFoundRoute(f"no registry endpoint /v2/{path}")
        response = handler(request, **kwargs)
    except RegistryError as exc:
        response = _error_response(request, exc, _scope_for(kwargs.get("name"), request.method or "GET"))
    except EngineError as exc:
        log.error("registry storage error on %s %s: %s", request.method, request.path, exc)
        response = _error_response(request, _StorageError(str(exc)), None)
    response[API_VERSION[0]] = API_VERSION[1]
    return response


class _NotFoundRoute(RegistryError):
    status, code = 404, "NOT_FOUND"


class _StorageError(RegistryError):
    status, code = 500, "UNKNOWN"


class _PaginationInvalid(RegistryError):
    status, code = 400, "PAGINATION_NUMBER_INVALID"


def _methods(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise Unsupported(f"{request.method} is not supported here; use {', '.join(allowed)}")


def _base(request: HttpRequest) -> HttpResponse:
    _methods(request, "GET", "HEAD")
    _principal(request)
    return JsonResponse({})


def _token(request: HttpRequest) -> HttpResponse:
    """The Docker token flow: basic credentials in, a short-lived scoped bearer token out."""
    _methods(request, "GET", "POST")
    principal = _principal(request)
    scopes = request.GET.getlist("scope")
    if request.method == "POST":  # the OAuth2 form some clients send
        scopes += request.POST.getlist("scope")
    ttl = int(settings.HOSTPANEL_REGISTRY_TOKEN_TTL)
    token, _ = issue_bearer(principal, scopes, ttl)
    return JsonResponse({"token": token, "access_token": token, "expires_in": ttl})


def _uploads(request: HttpRequest, name: str) -> HttpResponse:
    _methods(request, "POST")
    principal = _principal(request)
    mount, source = request.GET.get("mount"), request.GET.get("from")
    if mount and source and services.mount_blob(principal, name, mount, source):
        return _empty(201, {"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount})
    if "digest" in request.GET:
        digest = services.upload_monolithic(
            principal, name, request.GET["digest"], request, _content_length(request)
        )
        return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})
    upload = services.start_upload(principal, name)
    return _empty(202, services.upload_headers(name, upload))


def _upload(request: HttpRequest, name: str, upload_id: str) -> HttpResponse:
    _methods(request, "GET", "PATCH", "PUT", "DELETE")
    principal = _principal(request)
    if request.method == "GET":
        upload = services.get_upload(principal, name, upload_id)
        return _empty(204, services.upload_headers(name, upload))
    if request.method == "DELETE":
        services.cancel_upload(principal, name, upload_id)
        return _empty(204)
    content_range = request.META.get("HTTP_CONTENT_RANGE")
    if request.method == "PATCH":
        upload = services.append_chunk(
            principal, name, upload_id, request, content_range, _content_length(request)
        )
        return _empty(202, services.upload_headers(name, upload))
    digest = services.complete_upload(
        principal,
        name,
        upload_id,
        request.GET.get("digest"),
        request,
        content_range,
        _content_length(request),
    )
    return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


def _blob(request: HttpRequest, name: str, digest: str) -> HttpResponse:
    _methods(request, "GET", "HEAD", "DELETE")
    principal = _principal(request)
    if request.method == "DELETE":
        services.delete_blob(principal, name, digest)
        return _empty(202)
    blob = services.get_blob(principal, name, digest)
    headers = {"Docker-Content-Digest": blob.digest, "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        response = _empty(200, headers)
        response["Content-Length"] = str(blob.size)
        response["Content-Type"] = "application/octet-stream"
        return response
    wanted = request.META.get("HTTP_RANGE")
    if wanted:
        return _range_response(blob, wanted, headers)
    response = BlobResponse(
        storage.VerifiedBlobFile(blob.path, blob.digest), content_type="application/octet-stream"
    )
    response["Content-Length"] = str(blob.size)
    for key, value in headers.items():
        response[key] = value
    return response


def _range_response(blob: services.BlobFile, wanted: str, headers: dict[str, str]) -> HttpResponse:
    match = _BYTES_RANGE_RE.match(wanted.strip())
    start: int | None = None
    end = blob.size - 1
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            start = int(match.group(1))
            if match.group(2):
                end = min(int(match.group(2)), blob.size - 1)
        else:  # the last N bytes
            start = max(blob.size - int(match.group(2)), 0)
    if start is None or start > end or start >= blob.size:
        response = _empty(416, headers)
        response["Content-Range"] = f"bytes */{blob.size}"
        return response
    length = end - start + 1
    f = open(blob.path, "rb")  # noqa: SIM115 - the response closes it
    f.seek(start)
    reader = storage.LimitedReader(f, length)
    response = StreamingHttpResponse(
        iter(lambda: reader.read(storage.CHUNK), b""), status=206, content_type="application/octet-stream"
    )
    response._resource_closers.append(reader.close)
    response["Content-Length"] = str(length)
    response["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    for key, value in headers.items():
        response[key] = value
    return response


def _manifest(request: HttpRequest, name: str, reference: str) -> HttpResponse:
    _methods(request, "GET", "HEAD", "PUT", "DELETE")
    principal = _principal(request)
    if request.method == "PUT":
        manifest = services.put_manifest(principal, name, reference, request.content_type, request)
        return _empty(
            201,
            {"Location": f"/v2/{name}/manifests/{manifest.digest}", "Docker-Content-Digest": manifest.digest},
        )
    if request.method == "DELETE":
        services.delete_manifest(principal, name, reference)
        return _empty(202)
    manifest = services.get_manifest(principal, name, reference)
    headers = {"Docker-Content-Digest": manifest.digest, "Content-Type": manifest.media_type}
    if request.method == "HEAD":
        response = _empty(200, headers)
        response["Content-Length"] = str(manifest.size)
        return response
    response = HttpResponse(services.manifest_bytes(manifest), content_type=manifest.media_type)
    response["Docker-Content-Digest"] = manifest.digest
    return response


def _tags(request: HttpRequest, name: str) -> HttpResponse:
    _methods(request, "GET")
    principal = _principal(request)
    n: int | None = None
    if request.GET.get("n") not in (None, ""):
        try:
            n = int(request.GET["n"])
        except ValueError:
            n = -1
        if n < 0:
            raise _PaginationInvalid(f"n={request.GET['n']!r}: give a number of tags, 0 or more")
    last = request.GET.get("last") or None
    tags, more = services.list_tags(principal, name, n, last)
    response = JsonResponse({"name": name, "tags": tags})
    if more and tags:
        response["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
    return response


_HANDLERS: dict[str, Callable[..., Any]] = {
    "uploads": _uploads,
    "upload": _upload,
    "blob": _blob,
    "manifest": _manifest,
    "tags": _tags,
}
