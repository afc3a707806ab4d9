"""The panel's state as Docker clients see it: apps made through the door as containers.

Pure functions of plain values (no queries), so each shape is unit-tested on its own.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from engine.dockerapi.filters import Filters, labels_match
from engine.dockerapi.render import human_duration
from hostpanel.deployments.models import APP_NAME_RE

ZERO_TIME = "0001-01-01T00:00:00Z"

# Docker's own rule for names; the panel's app names are narrower (APP_NAME_RE).
DOCKER_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass(frozen=True)
class ContainerState:
    """A replica's state in Docker's words."""

    status: str  # created, running, restarting, exited
    exit_code: int
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    error: str = ""

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")


def state_of(
    *,
    app_running: bool,
    replica_state: str | None,
    exit_code: int | None,
    started_at: datetime.datetime | None,
    finished_at: datetime.datetime | None,
    message: str = "",
) -> ContainerState:
    """Docker's state of a container whose app is (not) running and whose replica is in ``replica_state``."""
    code = exit_code or 0
    never_started = started_at is None
    if replica_state == "running" and app_running:
        return ContainerState("running", 0, started_at, None)
    if replica_state == "backoff":
        return ContainerState("restarting", code, started_at, finished_at)
    if replica_state == "exited" or (replica_state == "stopped" and not never_started):
        return ContainerState("exited", code, started_at, finished_at)
    if replica_state == "failed":
        return ContainerState(
            "exited" if not never_started else "created", code or 128, started_at, finished_at, message
        )
    if never_started:
        return ContainerState("created", 0, None, None, message if replica_state == "pending" else "")
    # asked to run, not reported yet (starting, updating, pending after a host went away)
    return ContainerState("restarting" if app_running else "exited", code, started_at, finished_at, message)


def rfc3339(moment: datetime.datetime | None) -> str:
    """A time as Docker writes it (UTC, nanosecond-style fraction), or Go's zero time."""
    if moment is None:
        return ZERO_TIME
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_text(state: ContainerState, now: datetime.datetime) -> str:
    """The STATUS column of ``docker ps``."""
    if state.status == "running" and state.started_at is not None:
        return f"Up {human_duration((now - state.started_at).total_seconds())}"
    if state.status == "restarting":
        ago = human_duration((now - (state.finished_at or now)).total_seconds())
        return f"Restarting ({state.exit_code}) {ago} ago"
    if state.status == "exited":
        ago = human_duration((now - (state.finished_at or state.started_at or now)).total_seconds())
        return f"Exited ({state.exit_code}) {ago} ago"
    return "Created"


@dataclass(frozen=True)
class ContainerView:
    """Everything the list and inspect answers are made of (read from the panel's rows)."""

    id: str
    name: str
    image: str
    command: list[str]
    created: datetime.datetime
    state: ContainerState
    config: dict[str, Any]  # Docker-facing fields kept from the create body (Labels exactly as sent)
    restart_policy: str
    restart_count: int
    memory_bytes: int
    cpu_millis: int
    pids: int
    network: str
    ports: list[dict[str, Any]]  # the replica's: container_port, protocol, host_port
    volumes: list[dict[str, Any]]
    host: str


def _restart_policy(text: str) -> dict[str, Any]:
    name, _, retries = text.partition(":")
    return {"Name": name, "MaximumRetryCount": int(retries or 0)}


def _port_list(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in ports:
        item: dict[str, Any] = {"PrivatePort": p["container_port"], "Type": p.get("protocol", "tcp")}
        if p.get("host_port"):
            item |= {"IP": "0.0.0.0", "PublicPort": p["host_port"]}
        out.append(item)
    return out


def _port_map(ports: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in ports:
        key = f"{p['container_port']}/{p.get('protocol', 'tcp')}"
        host_port = p.get("host_port")
        out[key] = [{"HostIp": "0.0.0.0", "HostPort": str(host_port)}] if host_port else None
    return out


def _mounts(volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"Type": "volume", "Name": v["name"], "Destination": v["path"], "Driver": "local", "RW": True}
        for v in volumes
    ]


def list_item(view: ContainerView, now: datetime.datetime) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    return {
        "Id": view.id,
        "Names": [f"/{view.name}"],
        "Image": view.config.get("Image") or view.image,
        "ImageID": "",
        "Command": " ".join(view.command),
        "Created": int(view.created.timestamp()),
        "Ports": _port_list(view.ports),
        "Labels": dict(view.config.get("Labels") or {}),
        "State": view.state.status,
        "Status": status_text(view.state, now),
        "HostConfig": {"NetworkMode": view.network},
        "NetworkSettings": {"Networks": {view.network: {}} if view.network != "none" else {}},
        "Mounts": _mounts(view.volumes),
    }


def inspect_document(view: ContainerView) -> dict[str, Any]:
    """``GET /containers/{id}/json``."""
    state = view.state
    config = view.config
    return {
        "Id": view.id,
        "Created": rfc3339(view.created),
        "Path": view.command[0] if view.command else "",
        "Args": view.command[1:],
        "State": {
            "Status": state.status,
            "Running": state.running,
            "Paused": False,
            "Restarting": state.status == "restarting",
            "OOMKilled": False,
            "Dead": False,
            "Pid": 0,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": rfc3339(state.started_at),
            "FinishedAt": rfc3339(state.finished_at),
        },
        "Image": view.image,
        "Name": f"/{view.name}",
        "RestartCount": view.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": view.network,
            "RestartPolicy": _restart_policy(view.restart_policy),
            "Memory": view.memory_bytes,
            "NanoCpus": view.cpu_millis * 1_000_000,
            "PidsLimit": view.pids,
            "PortBindings": {},
            "Privileged": False,
        },
        "Config": {
            "Hostname": view.id[:12],
            "Image": config.get("Image") or view.image,
            "Cmd": list(view.command),
            "Entrypoint": config.get("Entrypoint"),
            "Env": list(config.get("Env") or []),
            "Labels": dict(config.get("Labels") or {}),
            "WorkingDir": config.get("WorkingDir") or "",
            "User": config.get("User") or "",
            "Tty": bool(config.get("Tty")),
            "OpenStdin": bool(config.get("OpenStdin")),
            "AttachStdout": False,
            "AttachStderr": False,
            "StopSignal": config.get("StopSignal") or "SIGTERM",
        },
        "NetworkSettings": {"Ports": _port_map(view.ports), "Networks": {}},
        "Mounts": _mounts(view.volumes),
        "Node": {"Name": view.host} if view.host else None,
    }


def name_matches(pattern: str, name: str) -> bool:
    """Docker's ``name`` filter without a regex engine a tenant could stall: a substring, with
    ``^`` and ``$`` anchoring it at the start and end (``^web$`` is exactly ``web``)."""
    pattern = pattern.lstrip("/")
    if pattern.startswith("^/"):
        pattern = "^" + pattern[2:]
    start, end = pattern.startswith("^"), pattern.endswith("$") and len(pattern) > 1
    core = pattern[1 if start else 0 : -1 if end else None]
    if start and end:
        return name == core
    if start:
        return name.startswith(core)
    if end:
        return name.endswith(core)
    return core in name


LIST_FILTERS = ("name", "id", "label", "status", "ancestor")


def matches_filters(view: ContainerView, filters: Filters) -> bool:
    """Whether a container passes ``docker ps --filter`` (name, id, label, status, ancestor)."""
    checks = {
        "name": lambda v: name_matches(v, view.name),
        "id": lambda v: view.id.startswith(v),
        "status": lambda v: view.state.status == v,
        "ancestor": lambda v: v in (view.image, view.config.get("Image")),
    }
    for key, values in filters.items():
        if not values:
            continue
        if key == "label":
            if not labels_match(view.config.get("Labels"), values):
                return False
        elif not any(checks[key](v) for v in values):
            return False
    return True


def app_name_for(docker_name: str) -> str | None:
    """The panel app name a Docker name maps to (lowercase, ``_``/``.`` as ``-``), or None if none fits."""
    name = docker_name.lstrip("/").lower().replace("_", "-").replace(".", "-")
    if not re.match(APP_NAME_RE, name):
        return None
    return name
