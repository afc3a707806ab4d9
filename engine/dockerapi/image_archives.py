"""``docker save`` (``GET /images/get``, ``/images/{name}/get``) and ``docker load`` (``POST /images/load``).

Save writes the image as an OCI image layout tar (what `hpctl image export` writes; docker 25+
loads it too). Load takes a docker-save archive, an OCI layout tar or either compressed, through
the store's importer: every blob is verified, decompression bombs and hostile layers are refused,
and a failed load stores nothing. The body is spooled under the engine's tmp first, bounded by
``HOSTPANEL_MAX_UNPACKED_BYTES``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engine.dockerapi.http import APIError, Request, Router, Stream, json_lines
from engine.dockerapi.images import image_lookup
from engine.images.blobs import TMP_PREFIX
from engine.images.bounded import DecompressionLimits
from engine.images.extract import remove_tree
from engine.images.model import Image

if TYPE_CHECKING:
    from engine.engine import Engine

_CHUNK = 1 << 20


def loaded_lines(images: list[Image]) -> list[str]:
    """What ``docker load`` prints: each loaded tag, or the id of an image without one."""
    lines = []
    for image in images:
        lines += [f"Loaded image: {t}\n" for t in image.repo_tags] or [f"Loaded image ID: {image.id}\n"]
    return lines


def register(router: Router, engine: Engine) -> None:
    """Add the save and load endpoints for ``engine`` to ``router``."""

    def scratch_dir(what: str) -> Path:
        engine.paths.tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}docker-{what}-", dir=engine.paths.tmp))

    def export(name: str) -> Stream:
        scratch = scratch_dir("save")
        archive = scratch / "image.tar"
        try:
            with image_lookup(name):
                engine.images.export(name, archive)
        except BaseException:
            remove_tree(scratch)
            raise

        def chunks() -> Iterator[bytes]:
            try:
                with archive.open("rb") as f:
                    while data := f.read(_CHUNK):
                        yield data
            finally:
                remove_tree(scratch)

        return Stream(chunks(), content_type="application/x-tar")

    @router.route("GET", "/images/get")
    def save_named(request: Request) -> Stream:
        names = [n for n in request.query.get("names", []) if n]
        if len(names) != 1:
            raise APIError(400, "docker save takes one image at a time here: docker save -o FILE IMAGE")
        return export(names[0])

    @router.route("GET", "/images/{name:path}/get")
    def save(request: Request) -> Stream:
        return export(request.params["name"])

    @router.route("POST", "/images/load")
    def load(request: Request) -> Stream:
        scratch = scratch_dir("load")
        try:
            archive = scratch / "archive.tar"
            with archive.open("wb") as f:
                for chunk in request.body_chunks(DecompressionLimits.from_env().max_unpacked):
                    f.write(chunk)
            images = engine.images.import_archive(archive)
        finally:
            remove_tree(scratch)
        return Stream(json_lines({"stream": line} for line in loaded_lines(images)))
