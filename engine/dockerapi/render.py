"""An engine container (plus its Docker record) in Docker's JSON shapes: inspect and list (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.dockerapi.record import DockerRecord, HealthState
from engine.networks.model import DEFAULT_NETWORK_PREFIX
from engine.runtime.model import Container

ZERO_TIME = "0001-01-01T00:00:00Z"
INIT_PREFIX_LEN = 2  # the engine runs `<init> -- argv...` for --init


def docker_status(container: Container) -> str:
    """Docker's ``State.Status`` for the engine's status (``oom-killed`` is ``exited``)."""
    if container.status == "oom-killed":
        return "exited"
    return container.status


def _time(value: str) -> str:
    return value or ZERO_TIME


def _unix(value: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def human_duration(seconds: float) -> str:
    """A duration as Docker prints it in ``ps`` (``Less than a second``, ``5 minutes``, ``About an hour``)."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _since(value: str, now: datetime) -> float:
    if not value:
        return 0.0
    try:
        return (now - datetime.fromisoformat(value.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return 0.0


def status_text(container: Container, record: DockerRecord, now: datetime | None = None) -> str:
    """The ``Status`` column of ``docker ps``: ``Up 5 seconds (healthy)``, ``Exited (3) 1 minute ago``."""
    now = now or datetime.now(UTC)
    status = docker_status(container)
    if status == "created":
        return "Created"
    if status in ("running", "paused"):
        text = f"Up {human_duration(_since(container.started_at, now))}"
        if status == "paused":
            return f"{text} (Paused)"
        if record.check is not None:
            health = (record.health or HealthState()).status
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if status == "exited":
        return f"Exited ({container.exit_code or 0}) {human_duration(_since(container.finished_at, now))} ago"
    return status.capitalize()


def process_args(container: Container) -> list[str]:
    """The container's argv as Docker shows it (``Path`` + ``Args``), without the engine's init."""
    argv = list(container.command)
    if container.init and len(argv) > INIT_PREFIX_LEN and argv[1] == "--":
        argv = argv[INIT_PREFIX_LEN:]
    return argv


def network_name(container: Container) -> str:
    """The network's name as a client knows it (the tenant's default network is ``bridge``)."""
    return client_network_name(container.network)


def client_network_name(network: str) -> str:
    """``network`` as a client knows it: the tenant's default network (``bridge.<tenant>``) is ``bridge``."""
    return "bridge" if network.startswith(DEFAULT_NETWORK_PREFIX) else network


def _ports_map(container: Container, record: DockerRecord) -> dict[str, list[dict[str, str]] | None]:
    ports: dict[str, list[dict[str, str]] | None] = {key: None for key in record.exposed_ports}
    for p in container.ports:
        key = f"{p['container_port']}/{p.get('protocol', 'tcp')}"
        bindings = ports.get(key) or []
        bindings.append({"HostIp": str(p.get("host_ip", "0.0.0.0")), "HostPort": str(p["host_port"])})
        ports[key] = bindings
    return ports


def _endpoints(container: Container) -> dict[str, Any]:
    """``NetworkSettings.Networks``: one endpoint per network the container is on, in join order."""
    attachments = container.attachments()
    if not attachments:
        return {"host" if container.network == "host" else "none": _endpoint(container, {}, [])}
    result = {}
    for attached in attachments:
        name = client_network_name(attached["network"])
        result[name] = _endpoint(container, attached, _aliases(container, attached, name))
    return result


def endpoint_aliases(container: Container, network: str) -> list[str]:
    """The endpoint's ``Aliases`` on ``network`` as API 1.44 shows them (see :func:`_aliases`)."""
    for attached in container.attachments():
        if client_network_name(attached["network"]) == network or attached["network"] == network:
            return _aliases(container, attached, client_network_name(attached["network"]))
    return []


def _aliases(container: Container, attached: dict[str, Any], network: str) -> list[str]:
    """On a user-defined network the container's short id follows the aliases it was given
    (compose 1.x checks for it, or else reconnects)."""
    aliases = list(attached.get("aliases", []))
    if network != "bridge" and attached.get("ip_address") and container.short_id not in aliases:
        aliases.append(container.short_id)
    return aliases


def _endpoint(container: Container, attached: dict[str, Any], aliases: list[str]) -> dict[str, Any]:
    address = attached.get("ip_address", "")
    names = [container.name, container.short_id, *aliases]
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": list(aliases) or None,
        "MacAddress": "",
        "DriverOpts": None,
        "NetworkID": attached.get("network", ""),
        "EndpointID": container.id if address else "",
        "Gateway": "",
        "IPAddress": address,
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": list(dict.fromkeys(names)) if address else None,
    }


def mounts_json(container: Container, volume_path: Any = None) -> list[dict[str, Any]]:
    """``Mounts``: named volumes and tmpfs; ``volume_path(name)`` gives a volume's host path."""
    result = []
    for m in container.mounts:
        if m.get("kind") == "volume":
            result.append(
                {
                    "Type": "volume",
                    "Name": m["source"],
                    "Source": str(volume_path(m["source"])) if volume_path else "",
                    "Destination": m["target"],
                    "Driver": "local",
                    "Mode": "z",
                    "RW": not m.get("read_only"),
                    "Propagation": "",
                }
            )
        elif m.get("kind") == "tmpfs":
            result.append(
                {
                    "Type": "tmpfs",
                    "Source": "",
                    "Destination": m["target"],
                    "Mode": "",
                    "RW": not m.get("read_only"),
                    "Propagation": "",
                }
            )
    return result


def host_config(container: Container, record: DockerRecord) -> dict[str, Any]:
    """``HostConfig``: what was asked (as sent) with the limits the container really has."""
    r = container.resources
    data: dict[str, Any] = {
        "Binds": None,
        "NetworkMode": "default",
        "PortBindings": {},
        "RestartPolicy": record.restart_policy,
        "AutoRemove": record.auto_remove,
        "VolumeDriver": "",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "Privileged": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "Tmpfs": None,
        "Mounts": None,
        "Init": container.init,
        "Isolation": "",
        "PidMode": "",
        "IpcMode": "private",
        "UTSMode": "",
        "UsernsMode": "",
        "CgroupnsMode": "private",
        "ShmSize": 67108864,
        "Runtime": "crun",
        "ConsoleSize": [0, 0],
    }
    data.update(record.host_config)
    data.update(
        {
            "Memory": r.memory or 0,
            "MemoryReservation": r.memory_reservation or 0,
            "NanoCpus": int((r.cpus or 0) * 1_000_000_000) if record.host_config.get("NanoCpus") else 0,
            "CpuQuota": 0 if record.host_config.get("NanoCpus") else (r.cpu_quota or 0),
            "CpuPeriod": r.cpu_period if r.cpu_quota and not record.host_config.get("NanoCpus") else 0,
            "CpuShares": r.cpu_shares or 0,
            "PidsLimit": r.pids,
            "LogConfig": {
                "Type": "json-file",
                "Config": {"max-size": str(container.log_max_size), "max-file": str(container.log_max_files)},
            },
        }
    )
    return data


def state_json(container: Container, record: DockerRecord) -> dict[str, Any]:
    """``State``, with ``Health`` when the container has a health check."""
    status = docker_status(container)
    state: dict[str, Any] = {
        "Status": status,
        "Running": status in ("running", "paused"),
        "Paused": status == "paused",
        "Restarting": False,
        "OOMKilled": container.status == "oom-killed",
        "Dead": False,
        "Pid": container.pid if status in ("running", "paused") else 0,
        "ExitCode": container.exit_code or 0,
        "Error": "",
        "StartedAt": _time(container.started_at),
        "FinishedAt": _time(container.finished_at),
    }
    if record.check is not None:
        health = record.health or HealthState()
        state["Health"] = {
            "Status": health.status,
            "FailingStreak": health.failing_streak,
            "Log": list(health.log),
        }
    return state


def inspect_json(
    container: Container,
    record: DockerRecord,
    *,
    log_path: str = "",
    volume_path: Any = None,
    exec_ids: list[str] | None = None,
) -> dict[str, Any]:
    """``GET /containers/{id}/json``."""
    argv = process_args(container)
    config: dict[str, Any] = {
        "Hostname": container.hostname,
        "Domainname": "",
        "User": container.user,
        "AttachStdin": record.attach_stdin,
        "AttachStdout": record.attach_stdout,
        "AttachStderr": record.attach_stderr,
        "ExposedPorts": {key: {} for key in record.exposed_ports} or None,
        "Tty": record.tty,
        "OpenStdin": record.open_stdin,
        "StdinOnce": record.stdin_once,
        "Env": list(container.env),
        "Cmd": record.cmd,
        "Image": container.image,
        "Volumes": None,
        "WorkingDir": container.workdir,
        "Entrypoint": record.entrypoint,
        "OnBuild": None,
        "Labels": dict(container.labels),
        "StopSignal": container.stop_signal,
        "StopTimeout": container.stop_timeout,
    }
    if record.healthcheck is not None:
        config["Healthcheck"] = record.healthcheck
    ports = _ports_map(container, record)
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": state_json(container, record),
        "Image": container.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": log_path,
        "Name": f"/{container.name}",
        "RestartCount": record.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": host_config(container, record),
        "GraphDriver": {"Name": "overlay", "Data": None},
        "Mounts": mounts_json(container, volume_path),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": container.netns_path,
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": container.id if container.ip_address else "",
            "Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": container.ip_address,
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "MacAddress": "",
            "Networks": _endpoints(container),
        },
    }


def summary_json(container: Container, record: DockerRecord, now: datetime | None = None) -> dict[str, Any]:
    """One item of ``GET /containers/json`` (what ``docker ps`` prints)."""
    return {**summary_fixed(container, record), **summary_state(container, record, now)}


def summary_state(container: Container, record: DockerRecord, now: datetime | None = None) -> dict[str, Any]:
    """The part of a list item that changes while its records do not: ``State`` and ``Status``."""
    return {"State": docker_status(container), "Status": status_text(container, record, now)}


def summary_fixed(container: Container, record: DockerRecord) -> dict[str, Any]:
    """The rest of a list item: what only a change of the container's or Docker record changes.

    It reads exactly the fields named in :func:`summary_inputs` (a cache keyed by them is exact).
    """
    ports: list[dict[str, Any]] = []
    for key, bindings in _ports_map(container, record).items():
        port, _, protocol = key.partition("/")
        if not bindings:
            ports.append({"PrivatePort": int(port), "Type": protocol})
        for b in bindings or ():
            ports.append(
                {
                    "IP": b["HostIp"],
                    "PrivatePort": int(port),
                    "PublicPort": int(b["HostPort"]),
                    "Type": protocol,
                }
            )
    argv = process_args(container)
    return {
        "Id": container.id,
        "Names": [f"/{container.name}"],
        "Image": container.image,
        "ImageID": container.image_id,
        "Command": " ".join(argv),
        "Created": _unix(container.created),
        "Ports": ports,
        "Labels": dict(container.labels),
        "HostConfig": {"NetworkMode": record.host_config.get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": _endpoints(container)},
        "Mounts": mounts_json(container),
    }


def summary_inputs(container: Container, record: DockerRecord) -> tuple[Any, ...]:
    """Everything :func:`summary_fixed` reads, for comparing with ``==``.

    Records handed out by the engine's caches share their lists and dicts until the file is
    read again, so comparing an unchanged container's inputs is mostly identity checks.
    """
    return (
        container.id,
        container.name,
        container.image,
        container.image_id,
        container.command,
        container.init,
        container.created,
        container.ports,
        container.labels,
        container.network,
        container.network_aliases,
        container.ip_address,
        container.networks,
        container.mounts,
        record.exposed_ports,
        record.host_config.get("NetworkMode"),
    )
