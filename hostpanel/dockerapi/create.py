"""A Docker create body as a panel app: the engine's parser, then the panel's :class:`AppSpec`.

``engine.dockerapi.create.parse_create`` refuses every unsafe field (403 naming it) and parses
the rest into a neutral :class:`CreateRequest`; :func:`app_spec` maps that onto the spec
a release holds. What the panel cannot do yet is refused with a 400 naming the field (never
dropped when it matters: a ``User`` asks for fewer privileges than the image's); what changes
nothing but looks is accepted with a warning the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.dockerapi.create import CreateRequest, parse_create
from engine.dockerapi.http import APIError
from hostpanel.deployments.services import AppSpec

DEFAULT_MEMORY = 128 * 1024**2
DEFAULT_CPU_MILLIS = 250
DEFAULT_PIDS = 128
NETWORKS = {"bridge": "bridge", "none": "none"}


@dataclass(frozen=True)
class Translated:
    """The app spec, the Docker fields shown back by inspect and list, and warnings for the client."""

    spec: AppSpec
    shown: dict[str, Any]
    warnings: list[str]


def _unsupported(field_name: str, what: str) -> APIError:
    return APIError(400, f"{field_name}: {what} is not supported by HostPanel's Docker API yet; remove it")


def _cpu_millis(request: CreateRequest) -> int:
    if request.nano_cpus:
        return max(1, request.nano_cpus // 1_000_000)
    if request.cpu_quota:
        period = request.cpu_period or 100_000
        return max(1, request.cpu_quota * 1000 // period)
    return DEFAULT_CPU_MILLIS


def _seconds(nanoseconds: int) -> float:
    return nanoseconds / 1e9


def _health_check(request: CreateRequest) -> dict[str, Any] | None:
    check = request.healthcheck
    if check is None or check.disabled or not check.test:
        return None
    kind, *rest = check.test
    command = ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else list(rest)
    out: dict[str, Any] = {"command": command}
    if check.interval:
        out["interval"] = _seconds(check.interval)
    if check.timeout:
        out["timeout"] = _seconds(check.timeout)
    if check.retries:
        out["retries"] = check.retries
    return out


def _env(request: CreateRequest) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in request.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _restart(request: CreateRequest) -> str:
    policy = request.restart_policy
    if policy.name == "on-failure" and policy.maximum_retry_count:
        return f"on-failure:{policy.maximum_retry_count}"
    return policy.name or "no"


def _ports(request: CreateRequest, warnings: list[str]) -> list[dict[str, Any]]:
    ports: dict[tuple[int, str], dict[str, Any]] = {}
    for binding in request.ports:
        ports[(binding.container_port, binding.protocol)] = {
            "container_port": binding.container_port,
            "protocol": binding.protocol,
        }
        if binding.host_port or binding.host_ip:
            warnings.append(
                f"port {binding.container_port}/{binding.protocol}: the panel picks the host port and"
                " address (see docker port / docker inspect)"
            )
    if request.publish_all_ports:
        for key in request.exposed_ports:
            number, _, protocol = key.partition("/")
            if number.isdigit():
                ports.setdefault(
                    (int(number), protocol or "tcp"),
                    {"container_port": int(number), "protocol": protocol or "tcp"},
                )
    return list(ports.values())


def _volumes(request: CreateRequest) -> list[dict[str, Any]]:
    if request.tmpfs:
        raise _unsupported("HostConfig.Tmpfs", "a tmpfs mount")
    volumes = []
    for mount in request.mounts:
        if mount.kind == "tmpfs":
            raise _unsupported("HostConfig.Mounts", "a tmpfs mount")
        if not mount.source:
            raise _unsupported(
                "Volumes", f"an anonymous volume on {mount.target} (create a named volume, then -v name:path)"
            )
        if mount.read_only:
            raise _unsupported("HostConfig.Mounts", f"a read-only volume ({mount.source}:{mount.target}:ro)")
        volumes.append({"name": mount.source, "path": mount.target})
    return volumes


def translate(request: CreateRequest) -> Translated:
    """The app spec (replicas=1) for a parsed create body; 400 for what the panel cannot do yet."""
    if request.user:
        raise _unsupported("User", f"running as {request.user!r} (the image's user runs)")
    if request.workdir:
        raise _unsupported("WorkingDir", "a working directory other than the image's")
    if request.entrypoint:
        raise _unsupported("Entrypoint", "replacing the image's entrypoint (give the program in Cmd)")
    if request.init:
        raise _unsupported("HostConfig.Init", "an init process")
    network = NETWORKS.get(request.network_mode)
    if network is None:
        raise APIError(
            400,
            f"HostConfig.NetworkMode: network {request.network_mode!r}: use bridge (the tenant's"
            " network) or none",
        )
    warnings: list[str] = []
    if request.aliases:
        warnings.append("network aliases are not supported yet; they were ignored")
    if request.stop_signal and request.stop_signal.upper().removeprefix("SIG") != "TERM":
        warnings.append(f"StopSignal {request.stop_signal}: the engine stops containers with SIGTERM")
    ports = _ports(request, warnings)
    spec = AppSpec(
        image=request.image,
        command=list(request.cmd or ()),
        env=_env(request),
        ports=ports,
        network="bridge" if ports else network,
        volumes=_volumes(request),
        replicas=1,
        cpu_millis=_cpu_millis(request),
        memory_bytes=request.memory or DEFAULT_MEMORY,
        pids=request.pids_limit or DEFAULT_PIDS,
        restart_policy=_restart(request),
        health_check=_health_check(request),
    )
    shown = {
        "Image": request.image,
        "Cmd": list(request.cmd) if request.cmd is not None else None,
        "Entrypoint": list(request.entrypoint) if request.entrypoint is not None else None,
        "Env": list(request.env),
        "Labels": dict(request.labels),
        "Tty": request.tty,
        "OpenStdin": request.open_stdin,
        "StopSignal": request.stop_signal,
        "Hostname": request.hostname,
        "AutoRemove": request.auto_remove,  # --rm: removed when it exits, as the client waits for it
    }
    return Translated(spec, shown, warnings)


def parse(body: Any) -> Translated:
    """A create body checked (403 naming a refused field), parsed and translated."""
    return translate(parse_create(body))
