"""Transport for the Docker Engine API: routing, requests, responses, hijacked streams.

A threaded stdlib HTTP/1.1 server. Handlers are plain functions ``(request) -> Response``
registered on a :class:`Router` with path patterns such as ``/containers/{id}/start``
(``{name:path}`` also matches slashes, for image names). The ``/v1.NN`` prefix every client
sends is stripped before matching and kept on the request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from engine.dockerapi import API_VERSION
from engine.errors import (
    Conflict,
    EngineError,
    HostNotReady,
    InvalidArchive,
    InvalidSpec,
    NotFound,
    QuotaExceeded,
)

_log = logging.getLogger(__name__)

_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")

STDIN, STDOUT, STDERR = 0, 1, 2


class APIError(Exception):
    """An answer other than success: the status and the message the client prints."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(error: EngineError) -> int:
    """The HTTP status dockerd would give for an engine error of this class."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, InvalidSpec | InvalidArchive):
        return 400
    if isinstance(error, QuotaExceeded):
        return 403
    if isinstance(error, HostNotReady):
        return 503
    return 500


@dataclass
class Request:
    """One API request. ``identity`` is whatever the door's authenticator attached (tenant, role...)."""

    method: str
    path: str
    api_version: str
    query: dict[str, list[str]]
    headers: Any  # email.message.Message, case-insensitive
    rfile: IO[bytes]
    connection: socket.socket
    params: dict[str, str] = field(default_factory=dict)
    identity: Any = None
    body_started: bool = False
    _body: bytes | None = None

    def arg(self, name: str, default: str = "") -> str:
        """The last value of query parameter ``name`` (or ``default``)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter as the Docker clients send them (1/true/0/false)."""
        value = self.arg(name, "")
        if value == "":
            return default
        return value.lower() in ("1", "true", "yes")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        """An integer query parameter; a non-integer is a 400 naming the parameter."""
        value = self.arg(name, "")
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise APIError(400, f"invalid value for {name!r}: {value!r} is not an integer") from None

    def json_arg(self, name: str) -> Any:
        """A JSON-encoded query parameter (``filters``, ``buildargs``, ``labels``); absent is None."""
        value = self.arg(name, "")
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise APIError(400, f"invalid JSON in query parameter {name!r}") from None

    def body(self, limit: int = 16 * 1024 * 1024) -> bytes:
        """The whole request body (Content-Length or chunked), at most ``limit`` bytes."""
        if self._body is None:
            self._body = b"".join(self.body_chunks(limit))
        return self._body

    def body_chunks(self, limit: int | None = None) -> Iterator[bytes]:
        """The request body piece by piece; more than ``limit`` bytes is a 413."""
        self.body_started = True
        total = 0
        for chunk in _read_body(self.rfile, self.headers):
            total += len(chunk)
            if limit is not None and total > limit:
                raise APIError(413, f"request body larger than {limit} bytes")
            yield chunk

    def json(self) -> Any:
        """The body parsed as JSON (an empty body is ``{}``); anything else is a 400."""
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise APIError(400, f"the request body is not valid JSON: {exc}") from None


def _read_body(rfile: IO[bytes], headers: Any) -> Iterator[bytes]:
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        while True:
            line = rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            remaining = size
            while remaining:
                piece = rfile.read(min(remaining, 1 << 20))
                if not piece:
                    return
                remaining -= len(piece)
                yield piece
            rfile.readline(3)
    else:
        remaining = int(headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = rfile.read(min(remaining, 1 << 20))
            if not piece:
                return
            remaining -= len(piece)
            yield piece


@dataclass
class Response:
    """A complete answer: status, JSON (or raw bytes) body, extra headers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """A chunked answer whose body is produced while it is sent (logs -f, events, pull progress)."""

    chunks: Iterable[bytes]
    content_type: str = "application/json"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hijack:
    """Take over the connection (attach, exec start): ``run(rfile, sock)`` owns it until it returns.

    The server answers ``101 UPGRADED`` when the client asked to upgrade, else ``200`` with the
    raw-stream content type, then hands over; the connection is closed afterwards.
    """

    run: Callable[[IO[bytes], socket.socket], None]
    content_type: str = "application/vnd.docker.multiplexed-stream"


Answer = Response | Stream | Hijack
Handler = Callable[[Request], Answer]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as a JSON answer."""
    return Response(status=status, body=json.dumps(data).encode() + b"\n", headers=headers or {})


def no_content(status: int = 204) -> Response:
    """An answer without a body (204 for start/stop/rm, 304 for a no-op start or stop)."""
    return Response(status=status, content_type="")


def frame(stream: int, data: bytes) -> bytes:
    """One frame of the multiplexed stdout/stderr stream (8-byte header, then the payload)."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def json_lines(items: Iterable[Any]) -> Iterator[bytes]:
    """Each item as one JSON document per line, as the progress and event streams are sent."""
    for item in items:
        yield json.dumps(item).encode() + b"\n"


class Router:
    """Method + path pattern -> handler. Patterns use ``{name}`` and ``{name:path}``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator: register ``handler`` for ``method`` (``HEAD`` also matches ``GET`` routes)."""

        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` and ``pattern``."""
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+?)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters for a request, or a 404 / 405 ``APIError``."""
        allowed = False
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if not match:
                continue
            if route_method == method or (method == "HEAD" and route_method == "GET"):
                return handler, {k: unquote(v) for k, v in match.groupdict().items()}
            allowed = True
        if allowed:
            raise APIError(405, f"method {method} not allowed on {path}")
        raise APIError(404, f"page not found: {method} {path} is not part of the Docker Engine API we serve")


Authenticator = Callable[[Request], Any]
"""Called before routing: returns the request's identity or raises ``APIError`` (401/403)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ServerMixin  # type: ignore[assignment]
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's, made by send_response()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def version_string(self) -> str:
        return f"HostPanel (Docker Engine API {API_VERSION})"  # send_response()'s Server header

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        version = API_VERSION
        match = _VERSION_PREFIX.match(path)
        if match:
            version, path = match.group(1), match.group(2)
        request = Request(
            method=self.command,
            path=path,
            api_version=version,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            rfile=self.rfile,  # type: ignore[arg-type]
            connection=self.connection,
        )
        try:
            if self.server.authenticate is not None:
                request.identity = self.server.authenticate(request)
            handler, request.params = self.server.router.resolve(self.command, path)
            answer = handler(request)
        except APIError as exc:
            answer = json_response({"message": exc.message}, exc.status)
        except EngineError as exc:
            answer = json_response({"message": exc.message}, status_of(exc))
        except Exception as exc:  # a bug must still answer, not drop the client's connection
            _log.exception("%s %s failed", self.command, path)
            answer = json_response({"message": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        if not isinstance(answer, Hijack):
            self._drain_unread_body(request)
        self._send(answer)

    def _drain_unread_body(self, request: Request) -> None:
        """Read what a handler left of the body, so the next request on this connection parses."""
        if not request.body_started:
            for _ in request.body_chunks():
                pass

    def _common_headers(self) -> None:
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def _send(self, answer: Answer) -> None:
        if isinstance(answer, Response):
            self.send_response(answer.status)
            self._common_headers()
            if answer.content_type:
                self.send_header("Content-Type", answer.content_type)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            body = b"" if self.command == "HEAD" else answer.body
            self.send_header("Content-Length", str(len(answer.body)))
            self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
            self.flush_headers()
        elif isinstance(answer, Stream):
            self.send_response(answer.status)
            self._common_headers()
            self.send_header("Content-Type", answer.content_type)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for chunk in answer.chunks:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            finally:
                close = getattr(answer.chunks, "close", None)
                if close is not None:
                    close()
        else:
            upgrade = "upgrade" in (self.headers.get("Connection") or "").lower()
            if upgrade:
                self.send_response(101, "UPGRADED")
                self.send_header("Connection", "Upgrade")
                self.send_header("Upgrade", "tcp")
            else:
                self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", answer.content_type)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            answer.run(self.rfile, self.connection)  # type: ignore[arg-type]

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch


class _ServerMixin(socketserver.ThreadingMixIn):
    daemon_threads = True
    # The CLI sends requests in parallel (`docker rm -f $(docker ps -aq)`: one per container);
    # socketserver's default backlog of 5 refuses a unix socket's sixth waiting connect at once.
    request_queue_size = 128
    router: Router
    authenticate: Authenticator | None
    verbose: bool


class UnixServer(_ServerMixin, socketserver.UnixStreamServer):
    """The API on a unix socket (the operator's ``/run/hostpanel/docker.sock``), mode 0600."""

    def __init__(self, path: Path, router: Router, *, authenticate: Authenticator | None = None) -> None:
        self.router, self.authenticate, self.verbose = router, authenticate, False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old_umask)
        path.chmod(0o600)


class TLSServer(_ServerMixin, socketserver.TCPServer):
    """The API on TCP with TLS; with ``client_ca`` every client must show a certificate it signed."""

    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        context: ssl.SSLContext,
        *,
        authenticate: Authenticator | None,
    ) -> None:
        self.router, self.authenticate, self.verbose = router, authenticate, False
        self.context = context
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True), address


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Serve ``server`` on a daemon thread (tests and the panel's door); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="docker-api", daemon=True)
    thread.start()
    return thread
