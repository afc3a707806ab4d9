"""The classic ``POST /build``: a tar context in the body, built by the engine's builder.

The body is spooled (bounded) into a scratch directory under the engine's tmp, unpacked there
by :func:`engine.build.upload.unpack_context` (nothing lands outside it; symlinks are created
but the builder never follows one out of the context), and built with the builder's own context
confinement and size bounds. Output is streamed as ``{"stream": ...}`` lines and ends with
``{"aux": {"ID": ...}}`` and the ``Successfully built/tagged`` lines docker-py and compose read.
A base image (``FROM``) missing here is pulled first with the logins of ``X-Registry-Config``
(``pull=1``: every base is pulled again), its progress in the same stream.

Options the builder does not have are refused, not dropped: a non-default ``networkmode``,
``extrahosts`` or ``isolation`` is a 403 naming it (they would change what a RUN step can
reach); resource and cache options we cannot honour are a 400 naming them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.build import beneath
from engine.build.dockerfile import parse_dockerfile
from engine.build.model import BuildOptions, Cancellation, ContextLimits
from engine.build.upload import unpack_context
from engine.dockerapi.filters import request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, json_response
from engine.dockerapi.progress import Emit, Message, streamed
from engine.dockerapi.transfer import pull_image
from engine.errors import ImageNotFound, InvalidSpec
from engine.images.blobs import TMP_PREFIX
from engine.images.extract import remove_tree
from engine.images.reference import normalize_tag
from engine.registry import Credentials, parse_remote
from engine.runtime.model import DEFAULT_TENANT

if TYPE_CHECKING:
    from engine.engine import Engine

_DISCARD_MAX = 64 * 1024 * 1024
UNTAGGED_PREFIX = "hostpanel-untagged-build-"
# Query parameters that change what a RUN step may reach: anything but their default is a 403.
_GUARDED = {"networkmode": ("", "default"), "extrahosts": ("",), "isolation": ("", "default")}
# Parameters the builder cannot honour: anything but their default is a 400 naming them.
_UNSUPPORTED = {
    "remote": ("",),
    "squash": ("", "0", "false"),
    "platform": ("", "linux", "linux/amd64", "linux/arm64"),
    "outputs": ("", "[]"),
    "memory": ("", "0"),
    "memswap": ("", "0", "-1"),
    "cpushares": ("", "0"),
    "cpusetcpus": ("",),
    "cpusetmems": ("",),
    "cpuperiod": ("", "0"),
    "cpuquota": ("", "0"),
    "cgroupparent": ("",),
    "ulimits": ("", "null", "[]"),
    "securityopt": ("", "null", "[]"),
}
# Understood and without effect here (output verbosity, intermediate-container clean-up, cache hints).
_INERT = {
    "t",
    "dockerfile",
    "buildargs",
    "target",
    "nocache",
    "labels",
    "q",
    "rm",
    "forcerm",
    "cachefrom",
    "pull",
}
_INERT |= {"version", "shmsize", "session", "buildid"}


def check_options(query: dict[str, list[str]]) -> None:
    """Refuse build options we would otherwise drop: 403 for the guarded ones, 400 for the rest."""
    for name, values in query.items():
        for value in (v.lower() for v in values):  # docker-py sends False/True
            if name in _GUARDED and value not in _GUARDED[name]:
                raise APIError(
                    403, f"build option {name}={value!r} is not allowed: RUN steps use the builder's network"
                )
            if name in _UNSUPPORTED and value not in _UNSUPPORTED[name]:
                raise APIError(
                    400, f"build option {name}={value!r} is not supported by this engine; leave it out"
                )
            if name not in _GUARDED and name not in _UNSUPPORTED and name not in _INERT:
                raise APIError(400, f"unknown build option {name!r}")
    if query.get("version", ["1"])[-1] not in ("", "1"):
        raise APIError(400, "only the classic builder (version 1) is served: set DOCKER_BUILDKIT=0")


def string_map(raw: Any, what: str) -> dict[str, str]:
    """A JSON object of strings (``buildargs``, ``labels``); a null value (unset build arg) is dropped."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise APIError(400, f"{what} must be a JSON object of strings")
    result = {}
    for key, value in raw.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise APIError(400, f"{what}: the value of {key!r} must be a string")
        result[key] = value
    return result


def dockerfile_path(text: str) -> Path:
    """The ``dockerfile`` parameter: a path inside the context (absolute or ``..`` is a 400)."""
    path = PurePosixPath(text or "Dockerfile")
    if path.is_absolute() or ".." in path.parts:
        raise APIError(400, f"dockerfile {text!r} must be a path inside the build context")
    return Path(path)


def registry_logins(header: str | None) -> dict[str, Credentials]:
    """``X-Registry-Config`` (base64 JSON ``{registry: {"username", "password"}}``) by registry host."""
    if not header:
        return {}
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        raise APIError(400, "X-Registry-Config is not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        raise APIError(400, "X-Registry-Config must encode a JSON object")
    logins = {}
    for address, entry in doc.items():
        if not isinstance(entry, dict):
            raise APIError(400, f"X-Registry-Config: the entry of {address!r} must be an object")
        username, password = entry.get("username") or "", entry.get("password") or ""
        if isinstance(username, str) and isinstance(password, str) and (username or password):
            host = urlsplit(address if "://" in address else f"//{address}").netloc.lower()
            logins[host] = Credentials(username, password, source="X-Registry-Config")
    return logins


def base_images(text: str, name: str) -> list[str]:
    """The images a Dockerfile's stages start FROM (not ``scratch``, an earlier stage or a ``$VARIABLE``)."""
    stages: set[str] = set()
    bases: list[str] = []
    for stage in parse_dockerfile(text, name).stages:
        base = stage.base
        if "$" not in base and base != "scratch" and base.lower() not in stages and base not in bases:
            bases.append(base)
        if stage.name:
            stages.add(stage.name.lower())
    return bases


def _blob_bytes(root: Path) -> int:
    """Bytes the blob files below ``root`` take (what a prune frees is the difference)."""
    with os.scandir(root) as entries:
        return sum(e.stat(follow_symlinks=False).st_size for e in entries if e.is_file(follow_symlinks=False))


def _exists(engine: Engine, reference: str) -> bool:
    try:
        engine.images.resolve(reference)
    except ImageNotFound:
        return False
    except InvalidSpec:
        return True  # a malformed name: the builder says so
    return True


def closing_messages(image_id: str, tags: list[str], *, quiet: bool = False) -> list[Message]:
    """What ends a successful build's stream: the image id (aux) and the lines docker-py and compose parse.

    A quiet build (``-q``) says only the id, which the CLI prints.
    """
    if quiet:
        return [{"aux": {"ID": image_id}}, {"stream": image_id + "\n"}]
    short = image_id.split(":", 1)[-1][:12]
    return [
        {"aux": {"ID": image_id}},
        {"stream": f"Successfully built {short}\n"},
        *({"stream": f"Successfully tagged {t}\n"} for t in tags),
    ]


def register(router: Router, engine: Engine, limits: ContextLimits | None = None) -> None:
    """Add ``POST /build`` and ``/build/prune`` for ``engine``; ``limits`` bound the context."""
    bounds = limits or ContextLimits()

    @router.route("POST", "/build/prune")
    def prune_cache(request: Request) -> Response:
        """``docker builder prune``: the operator's build cache (tenant ``default``) is dropped.

        Layers an image still uses stay with the image; the rest is freed by the store's GC.
        """
        request_filters(request, ())  # filters (until, type...) would prune less: refuse them
        before = _blob_bytes(engine.images.blobs.root)
        engine.build_cache.forget(DEFAULT_TENANT)
        engine.images.gc()
        return json_response(
            {"CachesDeleted": None, "SpaceReclaimed": before - _blob_bytes(engine.images.blobs.root)}
        )

    @router.route("POST", "/build")
    def build(request: Request) -> Stream | Response:
        check_options(request.query)
        logins = registry_logins(request.headers.get("X-Registry-Config"))
        always_pull = request.flag("pull")
        tags = [normalize_tag(t) for t in request.query.get("t", []) if t]
        options: dict[str, Any] = {
            "dockerfile": dockerfile_path(request.arg("dockerfile")),
            "build_args": string_map(request.json_arg("buildargs"), "buildargs"),
            "labels": string_map(request.json_arg("labels"), "labels"),
            "target": request.arg("target") or None,
            "no_cache": request.flag("nocache"),
        }
        quiet = request.flag("q")
        engine.paths.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "docker-build-", dir=engine.paths.tmp))
        try:
            archive = scratch / "context.tar"
            size = 0
            with archive.open("wb") as f:
                # Past the bound the rest is read and dropped (up to _DISCARD_MAX), so the client gets
                # the 413 rather than a reset connection; beyond that the connection is closed.
                for chunk in request.body_chunks(bounds.context + _DISCARD_MAX):
                    size += len(chunk)
                    if size <= bounds.context:
                        f.write(chunk)
        except APIError as exc:
            remove_tree(scratch)
            return json_response({"message": exc.message}, exc.status, headers={"Connection": "close"})
        except BaseException:
            remove_tree(scratch)
            raise
        if size > bounds.context:
            remove_tree(scratch)
            raise APIError(413, f"the build context is larger than {bounds.context} bytes; make it smaller")

        cancel = Cancellation()
        untagged = f"{UNTAGGED_PREFIX}{secrets.token_hex(8)}:latest"  # its name until the build ends

        def pulls_needed(context: Path, dockerfile: Path, *, always: bool) -> list[str]:
            """The base images to pull first: missing ones (like docker), or all with ``--pull``.

            A Dockerfile that cannot be read or parsed here is left to the builder to refuse."""
            try:
                text = beneath.read_file(
                    context, str(dockerfile), what="the build context", limit=bounds.dockerfile
                )
                bases = base_images(text.decode("utf-8"), str(dockerfile))
            except (InvalidSpec, UnicodeDecodeError):
                return []
            return [b for b in bases if always or not _exists(engine, b)]

        def work(emit: Emit) -> list[Message]:
            try:
                context = scratch / "context"
                context.mkdir()
                unpack_context(archive, context, limit=bounds.context, what="the build context")
                archive.unlink()
                for ref in pulls_needed(context, options["dockerfile"], always=always_pull):
                    remote = parse_remote(ref)
                    for message in pull_image(engine, remote, logins.get(remote.registry), emit):
                        emit(message)

                def output(stream: str, text: str) -> None:
                    if not quiet:
                        emit({"stream": text.rstrip("\n") + "\n"})

                result = engine.build(
                    BuildOptions(
                        context=context,
                        tag=tags[0] if tags else untagged,
                        limits=bounds,
                        context_within=scratch,
                        cancel=cancel,
                        **options,
                    ),
                    output,
                )
                for extra in tags[1:]:
                    engine.images.tag(result.image.id, extra)
                if not tags:  # like docker build without -t: the image stays, untagged (dangling)
                    engine.images.remove(untagged, force=True, in_use={result.image.id})
                return closing_messages(result.image.id, tags, quiet=quiet)
            finally:
                remove_tree(scratch)

        return streamed(
            work, name="docker-api-build", connection=request.connection, on_abandon=cancel.cancel
        )
