"""``GET|HEAD|PUT /containers/{id}/archive``: what `docker cp` calls, over :mod:`engine.runtime.copy`.

HEAD and GET answer the ``X-Docker-Container-Path-Stat`` header (base64 of JSON
``{name, size, mode, mtime, linkTarget}``, ``mode`` in Go's ``os.FileMode`` bits, which the
CLI decodes); GET streams the path as a tar; PUT extracts the request's tar into an existing
directory. Every path is resolved inside the container (links never reach the host) and every
archive member is checked (see the engine module).
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.dockerapi.http import APIError, Request, Response, Router, Stream, no_content
from engine.dockerapi.lifecycle import find_container
from engine.runtime.copy import PathStat

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.engine import Engine

STAT_HEADER = "X-Docker-Container-Path-Stat"
TAR = "application/x-tar"
# Go's os.FileMode type bits (io/fs), as the docker CLI reads them.
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27
GO_DEVICE = 1 << 26
GO_NAMED_PIPE = 1 << 25
GO_SOCKET = 1 << 24
GO_SETUID = 1 << 23
GO_SETGID = 1 << 22
GO_CHAR_DEVICE = 1 << 21
GO_STICKY = 1 << 20
_CHUNK = 256 * 1024
_QUEUE_CHUNKS = 16


def go_file_mode(st_mode: int) -> int:
    """A Unix ``st_mode`` as Go's ``os.FileMode``: permission bits plus Go's own type bits."""
    mode = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= GO_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= GO_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        mode |= GO_NAMED_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= GO_SOCKET
    elif stat.S_ISCHR(st_mode):
        mode |= GO_DEVICE | GO_CHAR_DEVICE
    elif stat.S_ISBLK(st_mode):
        mode |= GO_DEVICE
    if st_mode & stat.S_ISUID:
        mode |= GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_STICKY
    return mode


def path_stat_header(info: PathStat) -> str:
    """The ``X-Docker-Container-Path-Stat`` value for ``info``."""
    mtime = datetime.fromtimestamp(info.mtime, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    data = {
        "name": info.name,
        "size": info.size,
        "mode": go_file_mode(info.mode),
        "mtime": mtime,
        "linkTarget": info.link_target,
    }
    return base64.b64encode(json.dumps(data).encode()).decode()


def _path_of(request: Request) -> str:
    path = request.arg("path")
    if not path:
        raise APIError(400, "the path parameter is required: the path inside the container, like /etc/hosts")
    return path


class _BodyReader:
    """The request body as a ``read(n)`` stream for the extractor."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1, /) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class ClientGone(Exception):
    """The client stopped reading the archive: the exporter stops too."""


class _QueueWriter:
    """A write-only file whose writes become chunks on a bounded queue (the exporter's thread).

    Raises ClientGone from ``write`` once ``stop`` is set, so an exporter never blocks forever
    on a queue nobody reads.
    """

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event) -> None:
        self._chunks = chunks
        self._stop = stop
        self._buffer = bytearray()

    def put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise ClientGone

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self.put(bytes(self._buffer))
            self._buffer.clear()


def _tar_stream(engine: Engine, container_id: str, path: str) -> Iterable[bytes]:
    """The tar of ``path`` produced on a thread and yielded chunk by chunk as it is written."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUE_CHUNKS)
    stop = threading.Event()

    def produce() -> None:
        writer = _QueueWriter(chunks, stop)
        try:
            engine.copy_from(container_id, path, writer)
            writer.flush()
            writer.put(None)
        except ClientGone:
            return
        except Exception as exc:  # reported by ending the stream early
            with contextlib.suppress(ClientGone):
                writer.put(exc)

    threading.Thread(target=produce, name="docker-api-archive", daemon=True).start()

    def consume() -> Iterator[bytes]:
        try:
            while (item := chunks.get()) is not None:
                if isinstance(item, BaseException):
                    return  # headers are sent: a cut-off tar is how the client learns
                yield item
        finally:
            stop.set()  # a producer still writing stops at its next chunk

    return consume()


def register(router: Router, engine: Engine) -> None:
    """Add the archive endpoints for ``engine``'s containers to ``router``."""

    @router.route("GET", "/containers/{id}/archive")  # HEAD too: the stat header only
    def get(request: Request) -> Response | Stream:
        container = find_container(engine, request.params["id"])
        path = _path_of(request)
        info = engine.stat_path(container.id, path)  # errors answer before any byte of the tar
        headers = {STAT_HEADER: path_stat_header(info)}
        if request.method == "HEAD":
            return Response(status=200, content_type="", headers=headers)
        return Stream(_tar_stream(engine, container.id, path), content_type=TAR, headers=headers)

    @router.route("PUT", "/containers/{id}/archive")
    def put(request: Request) -> Response:
        container = find_container(engine, request.params["id"])
        path = _path_of(request)
        engine.copy_to(
            container.id,
            path,
            _BodyReader(request.body_chunks()),
            keep_owners=request.flag("copyUIDGID"),
            no_overwrite_dir_non_dir=request.flag("noOverwriteDirNonDir"),
        )
        return no_content(200)
