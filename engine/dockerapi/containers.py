"""Container endpoints: create, start, stop, kill, restart, wait, remove, inspect, list, logs, attach.

Each handler translates (``create`` through :mod:`engine.dockerapi.create` and
:mod:`engine.dockerapi.translate`), calls the engine, and answers in Docker's shapes
(:mod:`engine.dockerapi.render`) with dockerd's status codes and wording. Terminals and stdin
go through :mod:`engine.dockerapi.interactive`; exec lives in :mod:`engine.dockerapi.execs`.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from engine.dockerapi import execs, interactive, links, listing, render
from engine.dockerapi.create import parse_create, with_image_defaults
from engine.dockerapi.filters import Filters, labels_match, request_filters
from engine.dockerapi.http import (
    STDERR,
    STDOUT,
    Answer,
    APIError,
    Hijack,
    Request,
    Response,
    Router,
    Stream,
    frame,
    json_response,
    no_content,
)
from engine.dockerapi.lifecycle import WAIT_CONDITIONS, Lifecycle
from engine.dockerapi.record import DockerRecord, HealthState
from engine.dockerapi.translate import container_spec
from engine.errors import CommandNotFound, Conflict, EngineError, ImageNotFound, InvalidSpec, NotFound
from engine.logs import k8s_file
from engine.runtime.model import ALIVE, DEFAULT_TENANT, Container
from engine.runtime.process import normalize_signal

if TYPE_CHECKING:
    from engine.engine import Engine

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
LIST_FILTERS = ("id", "name", "label", "status", "ancestor", "exited", "network", "volume", "health")
ATTACH_POLL_SECONDS = 0.02


def register(router: Router, engine: Engine, lifecycle: Lifecycle | None = None) -> Lifecycle:
    """Add the container and exec endpoints for ``engine`` to ``router``; returns their :class:`Lifecycle`."""
    life = lifecycle or Lifecycle(engine)
    life.resume()
    exec_table = execs.register(router, engine, life)
    encoder = listing.ListEncoder()

    @router.route("POST", "/containers/create")
    def create(request: Request) -> Response:
        return json_response(create_container(life, request, tenant=DEFAULT_TENANT), 201)

    @router.route("POST", "/containers/{id}/start")
    def start(request: Request) -> Response:
        container = life.find(request.params["id"])
        if container.status == "paused":
            raise APIError(409, "cannot start a paused container, try unpause instead")
        if container.status == "running":
            return no_content(304)
        life.update(container.id, _clear_manual_stop)
        try:
            engine.start(container.id)
        except EngineError:
            if life.record(container.id).auto_remove:
                life.remove(container.id, force=True, volumes=True)
            raise
        life.changed()
        life.watch(container.id)
        return no_content()

    @router.route("POST", "/containers/{id}/stop")
    def stop(request: Request) -> Response:
        container = life.find(request.params["id"])
        life.update(container.id, _set_manual_stop)  # also ends a restart policy's loop between runs
        if container.status not in ALIVE:
            return no_content(304)
        timeout = request.int_arg("t")
        signal = request.arg("signal")
        if signal:
            engine.kill(container.id, signal)
            engine.wait(container.id, timeout=container.stop_timeout if timeout is None else timeout)
        engine.stop(container.id, timeout)
        life.changed()
        return no_content()

    @router.route("POST", "/containers/{id}/kill")
    def kill(request: Request) -> Response:
        ref = request.params["id"]
        container = life.find(ref)
        if container.status not in ALIVE:
            raise APIError(409, f"Cannot kill container: {ref}: container {container.id} is not running")
        signal = normalize_signal(request.arg("signal") or "SIGKILL")
        if signal in ("SIGKILL", container.stop_signal):  # a signal that ends it, as `docker stop` would
            life.update(container.id, _set_manual_stop)
        engine.kill(container.id, signal)
        life.changed()
        return no_content()

    @router.route("POST", "/containers/{id}/restart")
    def restart(request: Request) -> Response:
        container = life.find(request.params["id"])
        life.update(container.id, _set_manual_stop)
        engine.stop(container.id, request.int_arg("t"))
        life.update(container.id, _clear_manual_stop)
        engine.start(container.id)
        life.changed()
        life.watch(container.id)
        return no_content()

    @router.route("POST", "/containers/{id}/wait")
    def wait(request: Request) -> Stream:
        container = life.find(request.params["id"])
        condition = request.arg("condition") or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise APIError(400, f"invalid condition {condition!r}: use {', '.join(WAIT_CONDITIONS)}")

        def result() -> Iterator[bytes]:
            code = life.wait(container.id, condition, container)
            yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"

        return Stream(result())

    @router.route("DELETE", "/containers/{id}")
    def remove(request: Request) -> Response:
        ref = request.params["id"]
        container = life.find(ref)
        force = request.flag("force")
        if container.status in ALIVE and not force:
            raise APIError(
                409,
                f'cannot remove container "/{container.name}": container is running: '
                "stop the container before removing or force remove",
            )
        life.update(container.id, _set_manual_stop)
        life.remove(container.id, force=force, volumes=request.flag("v"))
        return no_content()

    @router.route("GET", "/containers/{id}/json")
    def inspect(request: Request) -> Response:
        container = life.find(request.params["id"])
        return json_response(
            render.inspect_json(
                container,
                life.record(container.id),
                log_path=str(engine.containers.log_path(container)),
                volume_path=lambda name: engine.paths.root / "volumes" / name,
                exec_ids=exec_table.of_container(container.id),
            )
        )

    @router.route("GET", "/containers/json")
    def list_(request: Request) -> Response:
        filters = _filters(request)
        everything = request.flag("all") or bool(filters.get("status")) or bool(filters.get("exited"))
        limit = request.int_arg("limit")
        containers = engine.list(all=everything or (limit is not None and limit > 0))
        now = datetime.now(UTC)
        items = []
        for container in containers:
            rec = life.record(container.id)
            if _matches(container, rec, filters, engine):
                items.append(encoder.item(container, rec, now))
        if limit is not None and limit > 0:
            items = items[:limit]
        elif everything and not filters:
            encoder.keep_only(c.id for c in containers)
        return Response(body=listing.json_array(items))

    @router.route("POST", "/containers/prune")
    def prune(request: Request) -> Response:
        filters = request_filters(request, ("label",))
        deleted = []
        for container in engine.list(all=True):
            if container.status in ("created", "running", "paused"):
                continue
            if not labels_match(container.labels, filters.get("label", [])):
                continue
            with contextlib.suppress(NotFound, Conflict):  # gone, or started again meanwhile
                life.remove(container.id, force=False, volumes=False)
                deleted.append(container.id)
        return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": 0})

    @router.route("GET", "/containers/{id}/logs")
    def logs(request: Request) -> Stream:
        container = life.find(request.params["id"])
        rec = life.record(container.id)
        stdout, stderr = request.flag("stdout"), request.flag("stderr")
        if not (stdout or stderr):
            raise APIError(400, "Bad parameters: you must choose at least one stream")
        tail_text = request.arg("tail", "all")
        if tail_text not in ("", "all") and not tail_text.lstrip("-").isdigit():
            raise APIError(400, f"invalid value for 'tail': {tail_text!r} (a number or 'all')")
        tail = None if tail_text in ("", "all") else int(tail_text)
        since = _unix_time(request.arg("since"), "since")
        until = _unix_time(request.arg("until"), "until")
        lines = engine.logs(
            container.id,
            tail=tail,
            since=since if since and since.timestamp() > 0 else None,
            follow=request.flag("follow"),
        )
        wanted = {name for name, asked in (("stdout", stdout), ("stderr", stderr)) if asked}
        return Stream(
            _log_chunks(lines, wanted, until, request.flag("timestamps"), rec.tty),
            content_type=_stream_type(rec.tty),
        )

    @router.route("POST", "/containers/{id}/attach")
    def attach(request: Request) -> Answer:
        container = life.find(request.params["id"])
        rec = life.record(container.id)
        if request.flag("stdin") or rec.tty:
            return interactive.attach(engine, container, request)
        if not request.flag("stream") and not request.flag("logs"):
            raise APIError(400, "attach needs stream=1 or logs=1")
        return Hijack(
            _attach_output(life, container, request, rec),
            content_type=_stream_type(rec.tty),
        )

    return life


def create_container(life: Lifecycle, request: Request, *, tenant: str) -> dict[str, Any]:
    """``POST /containers/create``: translate, create, record; nothing is left behind on error."""
    engine = life.engine
    body = request.json()
    parsed_body, wanted_links = links.take_links(body)
    req = parse_create(parsed_body, several_networks=True)
    name = request.arg("name") or None
    if name is not None:
        if not _NAME_RE.match(name):
            raise APIError(
                400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        name = name.lstrip("/")
        _refuse_taken(engine, name)
    try:
        image = engine.image(req.image, tenant=tenant)
    except ImageNotFound:
        raise APIError(404, f"No such image: {_with_tag(req.image)}") from None
    req = with_image_defaults(req, volumes=image.config.volumes, exposed_ports=image.config.exposed_ports)
    anonymous: list[str] = []

    def anonymous_name() -> str:
        anonymous.append(secrets.token_hex(32))
        return anonymous[-1]

    spec = container_spec(
        req,
        name=name,
        tenant=tenant,
        anonymous_name=anonymous_name,
        free_port=free_port,
        extra=interactive.spec_fields(req),
    )
    warnings = links.check_links(engine, wanted_links, spec.network, tenant)
    try:
        container = engine.create(spec)
    except CommandNotFound as exc:
        argv = (spec.entrypoint if spec.entrypoint is not None else image.config.entrypoint) + (
            spec.command or (image.config.cmd if spec.entrypoint is None else ())
        )
        raise APIError(
            400,
            f'failed to create task for container: exec: "{argv[0] if argv else ""}": '
            f"executable file not found in $PATH ({exc.message})",
        ) from None
    except Conflict:
        if name is not None:
            _refuse_taken(engine, name)
        raise
    cmd, entrypoint = _effective_command(req.cmd, req.entrypoint, image.config.cmd, image.config.entrypoint)
    rec = DockerRecord.from_request(req, anonymous, _host_config_shown(body))
    rec.cmd, rec.entrypoint = cmd, entrypoint
    try:
        life.save(container.id, rec)
    except BaseException:
        life.remove(container.id, force=True, volumes=True, rec=rec)
        raise
    return {"Id": container.id, "Warnings": warnings}


def _effective_command(
    cmd: tuple[str, ...] | None,
    entrypoint: tuple[str, ...] | None,
    image_cmd: tuple[str, ...],
    image_entrypoint: tuple[str, ...],
) -> tuple[list[str] | None, list[str] | None]:
    """``Config.Cmd`` and ``Config.Entrypoint`` as dockerd shows them (the image's fill in)."""
    shown_entry = list(entrypoint) if entrypoint is not None else list(image_entrypoint)
    if cmd:
        shown_cmd: list[str] = list(cmd)
    else:
        shown_cmd = list(image_cmd) if entrypoint is None else []
    return shown_cmd or None, shown_entry or None


def _host_config_shown(body: Any) -> dict[str, Any]:
    host = body.get("HostConfig") if isinstance(body, dict) else None
    return dict(host) if isinstance(host, dict) else {}


def _refuse_taken(engine: Engine, name: str) -> None:
    with contextlib.suppress(NotFound, InvalidSpec):
        owner = engine.get(name)
        if owner.name == name:
            raise APIError(
                409,
                f'Conflict. The container name "/{name}" is already in use by container "{owner.id}". '
                "You have to remove (or rename) that container to be able to reuse that name.",
            )


def _with_tag(reference: str) -> str:
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in reference else f"{reference}:latest"


def free_port(protocol: str, host_ip: str) -> int:
    """A host port nothing listens on now (for ``-p 80`` and ``-P``)."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host_ip, 0))
        port: int = sock.getsockname()[1]
        return port


def _set_manual_stop(rec: DockerRecord) -> None:
    rec.manually_stopped = True


def _clear_manual_stop(rec: DockerRecord) -> None:
    rec.manually_stopped = False


def _stream_type(tty: bool) -> str:
    return "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"


# ---- list filters -------------------------------------------------------------------------
def _filters(request: Request) -> Filters:
    filters = request_filters(request, LIST_FILTERS)
    for status in filters.get("status", []):
        if status not in _STATUSES:
            raise APIError(400, f"invalid filter 'status={status}'")
    for code in filters.get("exited", []):
        if not code.lstrip("-").isdigit():
            raise APIError(400, f"invalid filter 'exited={code}'")
    return filters


def _matches(container: Container, rec: DockerRecord, filters: Filters, engine: Engine) -> bool:
    if not filters:
        return True

    def any_of(key: str, test: Callable[[str], bool]) -> bool:
        values = filters.get(key)
        return not values or any(test(v) for v in values)

    def name(pattern: str) -> bool:
        try:
            return re.search(pattern, f"/{container.name}") is not None
        except re.error:
            return pattern in container.name

    status = render.docker_status(container)
    health = (rec.health or HealthState()).status if rec.check is not None else "none"
    volumes = {m.get("source") for m in container.mounts} | {m.get("target") for m in container.mounts}
    return (
        any_of("id", container.id.startswith)
        and any_of("name", name)
        and labels_match(container.labels, filters.get("label", []))
        and any_of("status", lambda s: s == status)
        and any_of("exited", lambda c: status == "exited" and int(c) == (container.exit_code or 0))
        and any_of("ancestor", lambda a: _is_ancestor(engine, container, a))
        and any_of("network", lambda n: n in _network_names(container))
        and any_of("volume", lambda v: v in volumes)
        and any_of("health", lambda h: h == health)
    )


def _network_names(container: Container) -> set[str]:
    """Every name a ``network`` filter may use for the container's networks (``bridge`` too)."""
    names = {a["network"] for a in container.attachments()} or {container.network}
    return names | {render.client_network_name(n) for n in names}


def _is_ancestor(engine: Engine, container: Container, reference: str) -> bool:
    if reference in (container.image, container.image_id) or _with_tag(reference) == _with_tag(
        container.image
    ):
        return True
    bare = container.image_id.split(":", 1)[-1]
    if re.fullmatch(r"(sha256:)?[0-9a-f]{4,64}", reference) and bare.startswith(
        reference.removeprefix("sha256:")
    ):
        return True
    with contextlib.suppress(EngineError):
        return engine.image(reference).id == container.image_id
    return False


# ---- logs and attach ----------------------------------------------------------------------------
def _unix_time(value: str, name: str) -> datetime | None:
    """``since``/``until`` as the CLI sends them (``SECONDS[.NANOS]``), exact to the microsecond.

    Parsed as digits, not as a float: a float rounds the nanoseconds, and ``--since`` with the
    time of a line must still show that line.
    """
    if not value:
        return None
    match = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", value.strip())
    if not match:
        raise APIError(400, f"invalid value for {name!r}: {value!r} is not a Unix time")
    micros = int((match.group(2) or "0").ljust(9, "0")[:6])
    try:
        return datetime.fromtimestamp(int(match.group(1)), UTC) + timedelta(microseconds=micros)
    except (ValueError, OverflowError, OSError):
        raise APIError(400, f"invalid value for {name!r}: {value!r} is out of range") from None


def _docker_time(stamp: str) -> str:
    return stamp.replace("+00:00", "Z")


def _log_chunks(
    lines: Iterator[k8s_file.LogLine], wanted: set[str], until: datetime | None, timestamps: bool, tty: bool
) -> Iterator[bytes]:
    for line in lines:
        if until is not None and line.timestamp() > until:
            break
        if line.stream not in wanted:
            continue
        data = (f"{_docker_time(line.time)} " if timestamps else "") + line.text + "\n"
        payload = data.encode()
        yield payload if tty else frame(STDERR if line.stream == "stderr" else STDOUT, payload)


def _attach_output(
    life: Lifecycle, baseline: Container, request: Request, rec: DockerRecord
) -> Callable[[IO[bytes], socket.socket], None]:
    """The hijacked attach: the container's output from the log file until it stops."""
    streams = {
        s for s, flag in (("stdout", request.flag("stdout")), ("stderr", request.flag("stderr"))) if flag
    }
    follow = request.flag("stream")
    log = life.engine.containers.log_path(baseline)
    start = 0 if baseline.status == "created" or request.flag("logs") else _size(log)
    cid = baseline.id

    def done() -> bool:
        container = life.current(cid)
        if container is None:
            return True
        if container.status in ALIVE:
            return False
        if baseline.status == "running" or container.started_at != baseline.started_at:
            return container.status not in ("created", "running")
        return not follow

    def run(rfile: IO[bytes], sock: socket.socket) -> None:
        with life.reading(cid):
            lines = k8s_file.follow(
                log,
                start,
                done,
                poll_interval=ATTACH_POLL_SECONDS,
                max_files=baseline.log_max_files,
                sleep=life.nap,  # the watcher's changed() at the exit ends the wait at once
            )
            try:
                for chunk in _log_chunks(lines, streams, None, False, rec.tty):
                    sock.sendall(chunk)
            except OSError:
                pass
            finally:
                close = getattr(lines, "close", None)  # the follower's file, at once
                if close is not None:
                    close()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    return run


def _size(path: Any) -> int:
    try:
        return int(path.stat().st_size)
    except OSError:
        return 0
