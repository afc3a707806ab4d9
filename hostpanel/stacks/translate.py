"""A parsed compose service as an app's spec (deployments.AppSpec fields), and the stack's names.

Choices (README "Stacks"):
- the app is named as the service; the stack's networks and volumes are tenant networks and
  volumes named ``<stack>_<name>`` (``external: true``: the tenant's own of that name, such as
  its ``default`` network);
- the first published TCP port is the app's ``http_port`` (its hostname, rolling deploys); every
  published port gets a host port the panel assigns (the file's host port number is not a
  promise: the stack's page and API show the real one); ``expose`` needs nothing, since on the
  stack's networks every port of a service is reachable;
- a secret is a tenant secret (``external: true``), mounted at ``/run/secrets/<name>``;
- a service has outbound traffic (the tenant's bridge and egress rules), as in compose, unless
  every network it joins is ``internal: true``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from engine.compose import ComposeError, Project, Service
from hostpanel.deployments.health import MAX_INTERVAL
from hostpanel.deployments.models import APP_NAME_RE
from hostpanel.errors import InvalidRequest

DEFAULT_CPU_MILLIS = 250
DEFAULT_MEMORY_BYTES = 128 * 1024**2
DEFAULT_PIDS = 128
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
_APP_NAME = re.compile(APP_NAME_RE)


def refused(problems: list[dict[str, Any]]) -> InvalidRequest:
    """One 400 listing every problem (``where``, ``line``, ``message``)."""
    lines = [
        f"line {p['line']}: {p['where']}: {p['message']}"
        if p.get("line")
        else f"{p['where']}: {p['message']}"
        for p in problems
    ]
    return InvalidRequest(
        f"invalid compose file ({len(problems)} problem{'s' if len(problems) != 1 else ''}): "
        + "; ".join(lines),
        {"problems": problems},
    )


def from_compose_error(exc: ComposeError) -> InvalidRequest:
    return refused([{"where": p.where, "line": p.line, "message": p.message} for p in exc.problems])


def stack_object_name(stack: str, name: str) -> str:
    """The tenant network or volume a stack's own ``name`` is: ``<stack>_<name>``."""
    return f"{stack}_{name}"


@dataclass(frozen=True)
class Names:
    """How the project's networks, volumes and secrets map onto the tenant's."""

    networks: dict[str, str]  # project key -> tenant network name
    volumes: dict[str, str]  # project key -> tenant volume name
    secrets: dict[str, str]  # project key -> tenant secret name
    own_networks: tuple[str, ...]  # tenant networks the stack makes
    own_volumes: tuple[str, ...]  # tenant volumes the stack makes
    internal: frozenset[str] = frozenset()  # project networks declared internal: true


def names_of(stack: str, project: Project) -> Names:
    """The tenant objects the project's keys stand for; a file secret is a 400 (tenants' secrets only)."""
    problems = []
    networks = {
        key: net.name if net.external else stack_object_name(stack, key)
        for key, net in project.networks.items()
    }
    volumes = {
        key: vol.name if vol.external else stack_object_name(stack, key)
        for key, vol in project.volumes.items()
    }
    secrets = {}
    for key, secret in project.secrets.items():
        if not secret.external:
            problems.append(
                {
                    "where": f"secrets.{key}",
                    "line": None,
                    "message": "only the tenant's secrets can be used: create the secret in the panel "
                    "and declare it with external: true",
                }
            )
        secrets[key] = secret.name
    if problems:
        raise refused(problems)
    return Names(
        networks=networks,
        volumes=volumes,
        secrets=secrets,
        own_networks=tuple(networks[k] for k, n in project.networks.items() if not n.external),
        own_volumes=tuple(volumes[k] for k, v in project.volumes.items() if not v.external),
        internal=frozenset(k for k, n in project.networks.items() if n.internal),
    )


def app_spec_fields(service: Service, names: Names, *, image: str) -> dict[str, Any]:
    """The AppSpec fields of ``service`` (its image given: the file's, or its build's).

    Raises InvalidRequest naming the service's key and line for what the panel cannot do.
    """
    where = f"services.{service.name}"
    problems: list[dict[str, Any]] = []

    def problem(key: str, message: str) -> None:
        problems.append(
            {"where": f"{where}.{key}" if key else where, "line": service.line, "message": message}
        )

    if not _APP_NAME.match(service.name):
        problem(
            "", "a service is an app of the same name: use lowercase letters, digits and '-' (at most 40)"
        )
    ports: list[dict[str, Any]] = []
    for port in service.ports:
        if port.host_ip not in (None, "", "0.0.0.0"):
            problem("ports", f"host_ip {port.host_ip}: the panel chooses the address ports are published on")
        if port.protocol not in ("tcp", "udp"):
            problem("ports", f"protocol {port.protocol}: use tcp or udp")
        entry = {"container_port": port.target, "protocol": port.protocol}  # every ports: entry is published
        if entry not in ports:
            ports.append(entry)
    http_port = next((p["container_port"] for p in ports if p["protocol"] == "tcp"), None)
    volumes: list[dict[str, Any]] = []
    tmpfs: list[dict[str, Any]] = []
    for mount in service.volumes:
        if mount.type == "tmpfs":
            tmpfs.append(
                {"path": mount.target, **({"size_bytes": mount.tmpfs_size} if mount.tmpfs_size else {})}
            )
        elif mount.type == "volume" and mount.source:
            entry = {"name": names.volumes[mount.source], "path": mount.target}
            volumes.append(entry | {"read_only": True} if mount.read_only else entry)
        elif mount.type == "volume":
            problem(
                "volumes", f"{mount.target}: anonymous volumes are not kept; name it under top-level volumes:"
            )
        else:
            problem("volumes", f"{mount.target}: host bind mounts are not for tenants; use a named volume")
    secrets = []
    for ref in service.secrets:
        name = names.secrets.get(ref.source, ref.source)
        if ref.target not in (f"/run/secrets/{ref.source}", f"/run/secrets/{name}", ref.source, name):
            problem("secrets", f"{ref.source}: secrets are mounted at /run/secrets/{name}; remove target")
        secrets.append({"name": name, "env": None})
    for dep, condition in service.depends_on.items():
        if condition not in CONDITIONS:
            problem("depends_on", f"{dep}: condition {condition!r}: use one of {', '.join(CONDITIONS)}")
    health = _health_check(service, problem)
    if problems:
        raise refused(problems)
    fields: dict[str, Any] = {
        "image": image,
        "command": list(service.command or []),
        "entrypoint": None if service.entrypoint is None else list(service.entrypoint),
        "env": dict(service.environment),
        "secrets": secrets,
        "ports": ports,
        "http_port": http_port,
        "volumes": volumes,
        "tmpfs": tmpfs,
        "networks": [
            {"name": names.networks[key], "aliases": list(aliases)}
            for key, aliases in service.networks.items()
        ],
        # outbound traffic as compose gives it (the tenant's bridge, its egress rules), unless every
        # network of the service is internal: true
        "network": "none" if service.networks and set(service.networks) <= names.internal else "bridge",
        "replicas": service.replicas,
        "cpu_millis": max(10, round(service.cpus * 1000)) if service.cpus else DEFAULT_CPU_MILLIS,
        "memory_bytes": service.memory_bytes or DEFAULT_MEMORY_BYTES,
        "pids": service.pids or DEFAULT_PIDS,
        "restart_policy": service.restart or "no",
        "health_check": health,
        "user": service.user or "",
        "working_dir": service.working_dir or "",
        "stop_signal": service.stop_signal or "",
        "stop_grace_seconds": 10
        if service.stop_grace_period is None
        else math.ceil(service.stop_grace_period),
        "init": bool(service.init),
        "labels": dict(service.labels),
    }
    return fields


def _health_check(service: Service, problem: Any) -> dict[str, Any] | None:
    hc = service.healthcheck
    if hc is None or hc.disabled or not hc.test:
        return None
    if hc.start_period:
        problem("healthcheck.start_period", "not supported: the first checks count; raise retries instead")
    command = ["/bin/sh", "-c", hc.test[0]] if hc.shell else list(hc.test)
    check: dict[str, Any] = {"command": command}
    for key, value in (("interval", hc.interval), ("timeout", hc.timeout)):
        if value is not None:
            if not 0 < value <= MAX_INTERVAL:
                problem(f"healthcheck.{key}", f"use more than 0 and at most {MAX_INTERVAL:g} seconds")
            check[key] = value
    if hc.retries is not None:
        check["retries"] = hc.retries
    return check
