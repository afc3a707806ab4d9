"""Pull (``POST /images/create``) and push (``POST /images/{name}/push``) with the engine's registry client.

Credentials come in the ``X-Registry-Auth`` header (base64url JSON, as the docker CLI and
docker-py send it); without them the engine's own logins (``hpctl login``) apply. Progress is
streamed as the JSON messages the CLI draws its per-layer lines from. Registries on the loopback
network are reached over plain HTTP when they do not speak TLS (dockerd treats 127.0.0.0/8 as
insecure the same way); others listed in ``HOSTPANEL_DOCKER_INSECURE_REGISTRIES`` (comma
separated ``host:port``) too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.dockerapi.http import APIError, Request, Response, Router, Stream, json_response
from engine.dockerapi.images import image_lookup
from engine.dockerapi.progress import Emit, Message, streamed
from engine.images.reference import split_tag
from engine.registry import (
    AuthenticationFailed,
    BlobProgress,
    Credentials,
    RegistryClient,
    RemoteRef,
    parse_registry_url,
    parse_remote,
    remote_in,
)

if TYPE_CHECKING:
    from engine.engine import Engine

INSECURE_ENV = "HOSTPANEL_DOCKER_INSECURE_REGISTRIES"

_PULL_STATUS = {"exists": "Already exists", "transferring": "Downloading", "complete": "Pull complete"}
_PUSH_STATUS = {"exists": "Layer already exists", "transferring": "Pushing", "complete": "Pushed"}


def parse_registry_auth(header: str | None) -> Credentials | None:
    """The credentials of an ``X-Registry-Auth`` header (None when it carries none); 400 when malformed."""
    if not header or not header.strip():
        return None
    text = header.strip()
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise APIError(
            400, "X-Registry-Auth is not base64-encoded JSON; log in again with docker login"
        ) from None
    if not isinstance(doc, dict):
        raise APIError(400, "X-Registry-Auth must encode a JSON object")
    username, password = doc.get("username") or "", doc.get("password") or ""
    if not isinstance(username, str) or not isinstance(password, str):
        raise APIError(400, "X-Registry-Auth: username and password must be strings")
    if doc.get("identitytoken") and not password:
        raise APIError(
            400,
            "X-Registry-Auth carries an identity token, which this engine does not use; "
            "log in with a user name and a password or API token",
        )
    if not username and not password:
        return None
    return Credentials(username, password, source="X-Registry-Auth")


def is_insecure(registry: str, configured: str = "") -> bool:
    """Whether ``registry`` (host[:port]) may be reached over plain HTTP: loopback, or listed."""
    if registry in {r.strip() for r in configured.split(",") if r.strip()}:
        return True
    host = urlsplit("//" + registry).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pull_reference(from_image: str, tag: str) -> str:
    """The reference ``POST /images/create?fromImage=..&tag=..`` asks for (a digest may come as the tag)."""
    if not from_image:
        raise APIError(
            400, "fromImage must name the image to pull (fromSrc, docker import, is not supported)"
        )
    if not tag:
        return from_image
    return f"{from_image}@{tag}" if tag.startswith("sha256:") else f"{from_image}:{tag}"


def progress_message(event: BlobProgress, statuses: dict[str, str]) -> Message | None:
    """A registry client's progress step as the CLI's message (None for steps it does not draw)."""
    if event.kind != "layer":
        return None
    layer = event.digest.split(":", 1)[-1][:12]
    if event.status == "mounted":
        return {"status": "Mounted from another repository", "progressDetail": {}, "id": layer}
    status = statuses.get(event.status)
    if status is None:
        return None
    message: Message = {"status": status, "progressDetail": {}, "id": layer}
    if event.status == "transferring":
        message["progressDetail"] = {"current": event.done, "total": event.total}
    return message


def _reporter(emit: Emit, statuses: dict[str, str]) -> Any:
    def report(event: BlobProgress) -> None:
        message = progress_message(event, statuses)
        if message is not None:
            emit(message)

    return report


@contextlib.contextmanager
def registry_errors(status: int = 403) -> Iterator[None]:
    """A registry's refusal of the credentials as ``status``: 401 for ``docker login``; 403 for a pull
    or push (on a 401 the CLI would stop to prompt for a user name, which a script cannot answer)."""
    try:
        yield
    except AuthenticationFailed as exc:
        raise APIError(status, exc.message) from None


def insecure(remote: RemoteRef) -> bool:
    """Whether ``remote``'s registry may be reached over plain HTTP (see the module docstring)."""
    return is_insecure(remote.registry, os.environ.get(INSECURE_ENV, ""))


def pull_image(
    engine: Engine, remote: RemoteRef, credentials: Credentials | None, emit: Emit
) -> list[Message]:
    """Pull ``remote`` as ``docker pull`` shows it: progress through ``emit``; returns the closing messages.

    "Pulling from" is said once the manifest is in, so an unknown image or a refused login fails
    before any output (a plain 404 or 403 answer, not a broken stream).
    """
    started = False

    def first_then(message: Message) -> None:
        nonlocal started
        if not started:
            started = True
            emit({"status": f"Pulling from {remote.repository}", "id": remote.tag or remote.digest})
        emit(message)

    with registry_errors():
        report = engine.pull(
            remote,
            credentials=credentials,
            insecure=insecure(remote),
            progress=_reporter(first_then, _PULL_STATUS),
        )
    name = remote.local_name if not (remote.digest and not remote.tag) else str(remote)
    news = "Downloaded newer image for" if report.transferred else "Image is up to date for"
    return [{"status": f"Digest: {report.manifest_digest}"}, {"status": f"Status: {news} {name}"}]


def register(router: Router, engine: Engine) -> None:
    """Add the pull, push and login (``POST /auth``) endpoints for ``engine`` to ``router``."""

    @router.route("POST", "/images/create")
    def pull(request: Request) -> Stream:
        if request.arg("fromSrc"):
            raise APIError(400, "docker import (fromSrc) is not supported; use hpctl image import")
        platform = request.arg("platform")
        if platform and not platform.startswith("linux"):
            raise APIError(400, f"platform {platform!r} is not supported: this engine runs linux images")
        credentials = parse_registry_auth(request.headers.get("X-Registry-Auth"))
        remote = parse_remote(pull_reference(request.arg("fromImage"), request.arg("tag")))

        def work(emit: Emit) -> list[Message]:
            return pull_image(engine, remote, credentials, emit)

        return streamed(work, name="docker-api-pull")

    @router.route("POST", "/images/{name:path}/push")
    def push(request: Request) -> Stream:
        name, tag = request.params["name"], request.arg("tag")
        credentials = parse_registry_auth(request.headers.get("X-Registry-Auth"))
        if tag:
            tags = [f"{name}:{tag}"]
        else:
            repository = split_tag(f"{name}:x")[0]
            tags = [t for i in engine.images.list() for t in i.repo_tags if split_tag(t)[0] == repository]
        with image_lookup(name):
            if not tags:
                engine.images.resolve(name)  # raises the 404
            for t in tags:
                engine.images.resolve(t)
        remotes = [parse_remote(t) for t in tags]

        def work(emit: Emit) -> list[Message]:
            emit({"status": f"The push refers to repository [{remotes[0].registry}/{remotes[0].repository}]"})
            for local, remote in zip(tags, remotes, strict=True):
                with registry_errors():
                    report = engine.push(
                        local,
                        remote,
                        credentials=credentials,
                        insecure=insecure(remote),
                        progress=_reporter(emit, _PUSH_STATUS),
                    )
                size = engine.images.blobs.path(report.manifest_digest).stat().st_size
                short = remote.tag or "latest"
                emit({"status": f"{short}: digest: {report.manifest_digest} size: {size}"})
                emit(
                    {
                        "progressDetail": {},
                        "aux": {"Tag": short, "Digest": report.manifest_digest, "Size": size},
                    }
                )
            return []

        return streamed(work, name="docker-api-push")

    @router.route("POST", "/auth")
    def login(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        address = body.get("serveraddress") or ""
        if not isinstance(address, str) or not address or "docker.io" in address:
            raise APIError(400, "docker login needs the registry's address here: docker login HOST[:PORT]")
        endpoint = parse_registry_url(address)
        username, password = body.get("username") or "", body.get("password") or ""
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise APIError(400, "username and password must be given")
        client = RegistryClient(
            endpoint, Credentials(username, password), insecure=insecure(remote_in(endpoint, "x"))
        )
        with registry_errors(401):
            client.check_login()
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})
