"""HTTP endpoints of the OCI Distribution Spec at /v2/ (plain Django views; rules in services.py).

One dispatcher routes ``/v2/<name>/{blobs,manifests,tags}/...`` because
repository names contain slashes; :data:`_ENDPOINTS` maps each route and
method to its :class:`~hostpanel.registry.auth.Operation` and handler. The
dispatcher authenticates and authorizes every repository request once, with
the action its operation requires, and hands the handler the resulting
:class:`~hostpanel.registry.services.Access`. Every answer carries
``Docker-Distribution-API-Version: registry/2.0``; errors are
``{"errors": [{"code", "message", "detail"}]}``; a missing or wrong
credential is 401 with a Bearer challenge pointing at ``/v2/token``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from engine.errors import EngineError
from hostpanel.registry import services, storage
from hostpanel.registry.auth import (
    SERVICE,
    Operation,
    Principal,
    authenticate_request,
    challenge_scope,
    issue_bearer,
)
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


def _empty(status: int, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    response["Content-Length"] = "0"
    return response


# ---- the dispatcher -----------------------------------------------------------------------
@csrf_exempt
def v2(request: HttpRequest, path: str = "") -> HttpResponse:
    """Route one /v2/ request, authorize it once, and answer errors in the spec's format."""
    method = request.method or "GET"
    scope: str | None = None
    try:
        if path in ("", "/"):
            response = _base(request)
        elif path == "token":
            response = _token(request)
        else:
            kind, kwargs = _route(path)
            endpoint = _ENDPOINTS.get((kind, method))
            if endpoint is None:
                allowed = ", ".join(m for k, m in _ENDPOINTS if k == kind)
                unsupported = Unsupported(f"{method} is not supported here; use {allowed}")
                unsupported.headers = {"Allow": allowed}
                raise unsupported
            operation, handler = endpoint
            name = kwargs.pop("name")
            scope = challenge_scope(name, operation.action)
            access = services.authorize(_principal(request), name, operation)
            response = handler(request, access, **kwargs)
    except RegistryError as exc:
        response = _error_response(request, exc, scope)
    except EngineError as exc:
        log.error("registry storage error on %s %s: %s", request.method, request.path, exc)
        response = _error_response(request, _StorageError(str(exc)), None)
    response[API_VERSION[0]] = API_VERSION[1]
    return response


def _route(path: str) -> tuple[str, dict[str, str]]:
    for pattern, kind in _ROUTES:
        match = pattern.match(path)
        if match:
            return kind, match.groupdict()
    raise _NotFoundRoute(f"no registry endpoint /v2/{path}")


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


def _start_upload(request: HttpRequest, access: services.Access) -> HttpResponse:
    name = access.name
    mount, source = request.GET.get("mount"), request.GET.get("from")
    if mount and source and services.mount_blob(access, mount, source):
        return _empty(201, {"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount})
    if "digest" in request.GET:
        digest = services.upload_monolithic(access, request.GET["digest"], request, _content_length(request))
        return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})
    upload = services.start_upload(access)
    return _empty(202, services.upload_headers(name, upload))


def _upload_status(request: HttpRequest, access: services.Access, upload_id: str) -> HttpResponse:
    upload = services.get_upload(access, upload_id)
    return _empty(204, services.upload_headers(access.name, upload))


def _cancel_upload(request: HttpRequest, access: services.Access, upload_id: str) -> HttpResponse:
    services.cancel_upload(access, upload_id)
    return _empty(204)


def _append_chunk(request: HttpRequest, access: services.Access, upload_id: str) -> HttpResponse:
    upload = services.append_chunk(
        access, upload_id, request, request.META.get("HTTP_CONTENT_RANGE"), _content_length(request)
    )
    return _empty(202, services.upload_headers(access.name, upload))


def _complete_upload(request: HttpRequest, access: services.Access, upload_id: str) -> HttpResponse:
    digest = services.complete_upload(
        access,
        upload_id,
        request.GET.get("digest"),
        request,
        request.META.get("HTTP_CONTENT_RANGE"),
        _content_length(request),
    )
    return _empty(201, {"Location": f"/v2/{access.name}/blobs/{digest}", "Docker-Content-Digest": digest})


def _delete_blob(request: HttpRequest, access: services.Access, digest: str) -> HttpResponse:
    services.delete_blob(access, digest)
    return _empty(202)


def _get_blob(request: HttpRequest, access: services.Access, digest: str) -> HttpResponse:
    blob = services.get_blob(access, digest)
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


def _put_manifest(request: HttpRequest, access: services.Access, reference: str) -> HttpResponse:
    manifest = services.put_manifest(access, reference, request.content_type, request)
    location = f"/v2/{access.name}/manifests/{manifest.digest}"
    return _empty(201, {"Location": location, "Docker-Content-Digest": manifest.digest})


def _delete_manifest(request: HttpRequest, access: services.Access, reference: str) -> HttpResponse:
    services.delete_manifest(access, reference)
    return _empty(202)


def _get_manifest(request: HttpRequest, access: services.Access, reference: str) -> HttpResponse:
    manifest = services.get_manifest(access, reference)
    headers = {"Docker-Content-Digest": manifest.digest, "Content-Type": manifest.media_type}
    if request.method == "HEAD":
        response = _empty(200, headers)
        response["Content-Length"] = str(manifest.size)
        return response
    response = HttpResponse(services.manifest_bytes(manifest), content_type=manifest.media_type)
    response["Docker-Content-Digest"] = manifest.digest
    return response


def _tags(request: HttpRequest, access: services.Access) -> HttpResponse:
    n: int | None = None
    if request.GET.get("n") not in (None, ""):
        try:
            n = int(request.GET["n"])
        except ValueError:
            n = -1
        if n < 0:
            raise _PaginationInvalid(f"n={request.GET['n']!r}: give a number of tags, 0 or more")
    last = request.GET.get("last") or None
    name = access.name
    tags, more = services.list_tags(access, n, last)
    response = JsonResponse({"name": name, "tags": tags})
    if more and tags:
        response["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
    return response


Handler = Callable[..., HttpResponse]
_ENDPOINTS: dict[tuple[str, str], tuple[Operation, Handler]] = {
    ("manifest", "GET"): (Operation.READ_MANIFEST, _get_manifest),
    ("manifest", "HEAD"): (Operation.READ_MANIFEST, _get_manifest),
    ("manifest", "PUT"): (Operation.PUSH_MANIFEST, _put_manifest),
    ("manifest", "DELETE"): (Operation.DELETE_MANIFEST, _delete_manifest),
    ("blob", "GET"): (Operation.READ_BLOB, _get_blob),
    ("blob", "HEAD"): (Operation.READ_BLOB, _get_blob),
    ("blob", "DELETE"): (Operation.DELETE_BLOB, _delete_blob),
    ("uploads", "POST"): (Operation.UPLOAD_BLOB, _start_upload),
    ("upload", "GET"): (Operation.UPLOAD_BLOB, _upload_status),
    ("upload", "PATCH"): (Operation.UPLOAD_BLOB, _append_chunk),
    ("upload", "PUT"): (Operation.UPLOAD_BLOB, _complete_upload),
    ("upload", "DELETE"): (Operation.UPLOAD_BLOB, _cancel_upload),
    ("tags", "GET"): (Operation.LIST_TAGS, _tags),
}
"""Each repository route and method: the operation it is (what it requires) and its handler."""
