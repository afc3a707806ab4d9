"""``POST /containers/create``: a Docker create body, checked and parsed into a neutral request.

Pure (no engine runtime, no I/O): both doors use it, the operator's socket and the panel's
tenant endpoint. :func:`refuse_unsafe` raises a 403 naming the first field that would weaken
isolation (privileges, host namespaces, host paths, devices, weakened security options...) or
that HostPanel does not implement (refused rather than silently dropped); :func:`parse_create`
runs it and returns a :class:`CreateRequest`, or a 400 naming a malformed field.

Field names and shapes follow the Docker Engine API 1.44 ``ContainerConfig``, ``HostConfig``
and ``NetworkingConfig``; a value a client sends by default (``null``, ``0``, ``""``, ``[]``,
``{}``, ``false``) never counts as asking for something.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.dockerapi.http import APIError
from engine.networks.model import NetworkJoin

DOCKER_DEFAULT_CAPS = frozenset(
    {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    }
)
"""The capabilities dockerd gives every container: ``CapAdd`` may only name these."""

DROPPED_CAPS = frozenset({"NET_RAW"})
"""Docker defaults HostPanel's engine withholds anyway (raw sockets spoof traffic on a shared bridge)."""

DEFAULT_TMPFS_SIZE = 64 * 1024 * 1024
"""A ``--tmpfs`` without ``size=`` gets 64 MiB (the engine wants every tmpfs bounded)."""

MAX_ID = 65535
"""The highest uid/gid inside a container (its user namespace maps 65536 ids)."""

RESERVED_LABEL_PREFIX = "org.hostpanel."
"""Labels the host agent reads to recognise the panel's replicas (see hostpanel/hosts/agent.py)."""

RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")

# HostConfig fields that are parsed (translated) below.
_HOST_SUPPORTED = frozenset(
    {
        "Binds",
        "Mounts",
        "Tmpfs",
        "NetworkMode",
        "PortBindings",
        "PublishAllPorts",
        "RestartPolicy",
        "AutoRemove",
        "Memory",
        "MemoryReservation",
        "NanoCpus",
        "CpuQuota",
        "CpuPeriod",
        "CpuShares",
        "PidsLimit",
        "Init",
        "LogConfig",
        "CapAdd",
        "SecurityOpt",
    }
)
# HostConfig fields accepted whatever their value: they change nothing that isolates a tenant.
_HOST_IGNORED = frozenset(
    {
        "ContainerIDFile",
        "ConsoleSize",
        "Dns",
        "DnsOptions",
        "DnsSearch",
        "MemorySwap",
        "MemorySwappiness",
        "KernelMemory",
        "KernelMemoryTCP",
        "Isolation",
        "CpuCount",
        "CpuPercent",
        "Annotations",
    }
)
# Security-relevant fields: refused (403) whenever they ask for anything.
_HOST_REFUSED = {
    "Privileged": "privileged containers reach the host's devices and kernel",
    "Devices": "host devices stay on the host",
    "DeviceRequests": "host devices (GPUs) stay on the host",
    "DeviceCgroupRules": "host devices stay on the host",
    "Sysctls": "kernel parameters are set by the operator, not per container",
    "CgroupParent": "the engine places every container in its tenant's cgroup",
    "VolumeDriver": "only the engine's own volumes are served (no volume drivers)",
    "Runtime": "the engine runs every container with its own runtime (crun)",
    "OomKillDisable": "a container out of memory is killed like any other",
    "MaskedPaths": "the runtime's masked /proc and /sys paths stay masked",
    "ReadonlyPaths": "the runtime's read-only /proc and /sys paths stay read-only",
    "Cgroup": "the engine gives every container its own cgroup",
    "VolumesFrom": "share data through a named volume instead",
    "Links": "legacy links are not supported; use a network and its aliases",
    "GroupAdd": "supplementary groups are not supported",
    "OomScoreAdj": "the OOM score is the engine's to set",
    "Ulimits": "rlimits are the host's (raise them with the operator)",
    "ShmSize": "/dev/shm has the engine's fixed size",
    "CapDrop": "capabilities are the engine's fixed set (no per-container drop)",
    "ReadonlyRootfs": "a read-only root file system is not supported yet",
    "ExtraHosts": "extra /etc/hosts entries are not supported; use network aliases",
    "CpusetCpus": "CPU pinning is the operator's; use NanoCpus or CpuQuota",
    "CpusetMems": "memory node pinning is the operator's",
    "CpuRealtimePeriod": "realtime scheduling is not available to containers",
    "CpuRealtimeRuntime": "realtime scheduling is not available to containers",
    "BlkioWeight": "block I/O weights are not supported here",
    "BlkioWeightDevice": "block I/O weights are not supported here",
    "BlkioDeviceReadBps": "per-device block I/O limits are the operator's",
    "BlkioDeviceWriteBps": "per-device block I/O limits are the operator's",
    "BlkioDeviceReadIOps": "per-device block I/O limits are the operator's",
    "BlkioDeviceWriteIOps": "per-device block I/O limits are the operator's",
    "IOMaximumIOps": "Windows-only",
    "IOMaximumBandwidth": "Windows-only",
    "StorageOpt": "the root file system's size is the tenant's storage quota",
}
# Fields whose empty value already asks for something (an empty MaskedPaths unmasks everything).
_NULL_ONLY = frozenset({"MaskedPaths", "ReadonlyPaths"})
_NAMESPACE_MODES = {
    "PidMode": "the PID namespace",
    "IpcMode": "the IPC namespace",
    "UTSMode": "the UTS namespace",
    "UsernsMode": "the user namespace",
    "CgroupnsMode": "the cgroup namespace",
}
# Config (top-level) fields parsed below, and those accepted whatever their value.
_CONFIG_SUPPORTED = frozenset(
    {
        "Hostname",
        "User",
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "ExposedPorts",
        "Tty",
        "OpenStdin",
        "StdinOnce",
        "Env",
        "Cmd",
        "Healthcheck",
        "Image",
        "Volumes",
        "WorkingDir",
        "Entrypoint",
        "Labels",
        "StopSignal",
        "StopTimeout",
        "NetworkDisabled",
        "HostConfig",
        "NetworkingConfig",
    }
)
_CONFIG_IGNORED = frozenset({"Domainname", "ArgsEscaped", "OnBuild", "Shell", "MacAddress"})

_SIGNAL_RE = re.compile(r"^(SIG)?[A-Z0-9+-]{1,16}$|^[0-9]{1,2}$")
_SAFE_NO_NEW_PRIVILEGES = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")


@dataclass(frozen=True)
class Healthcheck:
    """A container's health check (``Config.Healthcheck``); durations in nanoseconds, 0 = default."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    retries: int = 0
    start_period: int = 0
    start_interval: int = 0

    @property
    def disabled(self) -> bool:
        """``["NONE"]`` turns off the image's check."""
        return self.test[:1] == ("NONE",)


@dataclass(frozen=True)
class RestartPolicy:
    """``HostConfig.RestartPolicy``: ``no``, ``always``, ``unless-stopped`` or ``on-failure``."""

    name: str = "no"
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class PortBinding:
    """One published port; ``host_port`` 0 means any free port."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0


@dataclass(frozen=True)
class MountRequest:
    """A mount the body asks for: a named volume (``source`` empty: an anonymous one) or a tmpfs."""

    kind: str  # "volume" | "tmpfs"
    target: str
    source: str = ""
    read_only: bool = False
    size: int = 0
    mode: int | None = None


@dataclass(frozen=True)
class CreateRequest:
    """A Docker create body, parsed: what the container asks for, in Docker's terms.

    ``cmd``/``entrypoint`` are None when the body leaves them to the image; an entrypoint of
    ``()`` resets the image's. ``labels`` are exactly as sent. Resource fields are None when
    unset. ``network_mode`` is ``bridge`` (Docker's ``default``), ``none`` or a network name.
    """

    image: str
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    init: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    healthcheck: Healthcheck | None = None
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False
    memory: int | None = None
    memory_reservation: int | None = None
    nano_cpus: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    exposed_ports: tuple[str, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    publish_all_ports: bool = False
    tmpfs: tuple[MountRequest, ...] = ()
    mounts: tuple[MountRequest, ...] = ()
    network_mode: str = "bridge"
    aliases: tuple[str, ...] = ()
    networks: tuple[NetworkJoin, ...] = ()  # the other EndpointsConfig networks, after network_mode
    log_max_size: int | None = None
    log_max_files: int | None = None


def _refuse(field_name: str, why: str) -> APIError:
    return APIError(403, f"{field_name} is refused: {why}")


def _bad(field_name: str, why: str) -> APIError:
    return APIError(400, f"invalid {field_name}: {why}")


def _is_default(value: Any) -> bool:
    """True for the zero values clients send for fields they do not use."""
    return value is None or value is False or value == 0 or value in ("", [], {})


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(name, f"expected a JSON object, got {type(value).__name__}")
    return value


def _host_config(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return _object(body.get("HostConfig"), "HostConfig")


def refuse_unsafe(body: Any) -> None:
    """Raise a 403 ``APIError`` naming the first field of a create body that HostPanel refuses.

    Refused: ``Privileged``, ``CapAdd`` beyond Docker's default set (and ``NET_RAW``, which the
    engine withholds), ``Devices``/``DeviceRequests``/``DeviceCgroupRules``, host or
    ``container:`` PID/IPC/UTS/user/cgroup namespaces, ``NetworkMode`` host or ``container:``,
    host paths in ``Binds``/``Mounts`` (and volume driver options, which can bind host paths),
    ``SecurityOpt`` that weakens seccomp, AppArmor, SELinux or no-new-privileges,
    ``Sysctls``, ``CgroupParent``, ``VolumeDriver``, ``Runtime``, ``OomKillDisable``, a ``User``
    whose numeric uid or gid is outside 0-65535, labels under ``org.hostpanel.`` (the agent's
    marks of the panel's replicas), and every field HostPanel does not implement (refused rather
    than ignored). A body that is not a JSON object is a 400.
    """
    if not isinstance(body, Mapping):
        raise _bad("request body", "expected a JSON object (the container's config)")
    for key, value in body.items():
        if key not in _CONFIG_SUPPORTED and key not in _CONFIG_IGNORED and not _is_default(value):
            raise _refuse(key, "this field is not supported by HostPanel; remove it")
    host = _host_config(body)
    for key, value in host.items():
        if key in _HOST_REFUSED:
            if value is not None and (key in _NULL_ONLY or not _is_default(value)):
                raise _refuse(f"HostConfig.{key}", _HOST_REFUSED[key])
        elif key in _NAMESPACE_MODES:
            _check_namespace_mode(key, value)
        elif key not in _HOST_SUPPORTED and key not in _HOST_IGNORED and not _is_default(value):
            raise _refuse(f"HostConfig.{key}", "this field is not supported by HostPanel; remove it")
    _check_network_mode(host.get("NetworkMode"))
    _check_caps(host.get("CapAdd"))
    _check_security_opt(host.get("SecurityOpt"))
    _check_binds(host.get("Binds"))
    _check_mounts(host.get("Mounts"))
    _check_tmpfs_options(host.get("Tmpfs"))
    check_user(body.get("User"))
    _check_labels(body.get("Labels"))


def _check_labels(value: Any) -> None:
    """HostPanel's own labels mark the panel's replicas: a forged one could pass for another's."""
    if not isinstance(value, Mapping):
        return
    for key in value:
        if isinstance(key, str) and key.lower().startswith(RESERVED_LABEL_PREFIX):
            raise _refuse("Labels", f"{key!r}: labels under {RESERVED_LABEL_PREFIX!r} are HostPanel's own")


def _check_namespace_mode(key: str, value: Any) -> None:
    if _is_default(value):
        return
    mode = str(value)
    if mode in ("private", "shareable") or (key == "IpcMode" and mode in ("none",)):
        return
    raise _refuse(
        f"HostConfig.{key}",
        f"{mode!r} would share {_NAMESPACE_MODES[key]} with the host or another container; "
        "every container gets its own",
    )


def _check_network_mode(value: Any) -> None:
    mode = "" if value is None else str(value)
    if mode == "host":
        raise _refuse("HostConfig.NetworkMode", "'host' shares the host's network; use a network")
    if mode.startswith("container:"):
        raise _refuse("HostConfig.NetworkMode", f"{mode!r} would join another container's network namespace")


def _check_caps(value: Any) -> None:
    if _is_default(value):
        return
    if not isinstance(value, list):
        raise _bad("HostConfig.CapAdd", "expected a list of capability names")
    for cap in value:
        name = str(cap).upper().removeprefix("CAP_")
        if name == "ALL" or name not in DOCKER_DEFAULT_CAPS:
            raise _refuse(
                "HostConfig.CapAdd",
                f"{cap!r} is beyond Docker's default capability set; containers get only that set",
            )
        if name in DROPPED_CAPS:
            raise _refuse(
                "HostConfig.CapAdd",
                f"{cap!r}: HostPanel withholds NET_RAW (raw sockets) from every container",
            )


def _check_security_opt(value: Any) -> None:
    if _is_default(value):
        return
    if not isinstance(value, list):
        raise _bad("HostConfig.SecurityOpt", "expected a list of strings")
    for opt in value:
        text = str(opt).strip()
        if text.lower() in _SAFE_NO_NEW_PRIVILEGES:
            continue
        raise _refuse(
            "HostConfig.SecurityOpt",
            f"{text!r}: seccomp, AppArmor, SELinux labels and no-new-privileges are the engine's; "
            "only 'no-new-privileges' (always on) may be given",
        )


def _check_binds(value: Any) -> None:
    if _is_default(value):
        return
    if not isinstance(value, list):
        raise _bad("HostConfig.Binds", "expected a list of 'volume:/path[:ro]' strings")
    for bind in value:
        source = str(bind).split(":", 1)[0]
        if source.startswith(("/", ".", "~")):
            raise _refuse("HostConfig.Binds", f"{bind!r} mounts a host path; use a named volume (name:/path)")


def _check_mounts(value: Any) -> None:
    if _is_default(value):
        return
    if not isinstance(value, list):
        raise _bad("HostConfig.Mounts", "expected a list of mount objects")
    for mount in value:
        m = _object(mount, "HostConfig.Mounts[]")
        kind = m.get("Type") or "volume"
        if kind == "bind" or m.get("BindOptions"):
            raise _refuse("HostConfig.Mounts", f"a bind mount of {m.get('Source')!r} mounts a host path")
        if kind not in ("volume", "tmpfs"):
            raise _refuse("HostConfig.Mounts", f"mount type {kind!r}: only 'volume' and 'tmpfs' are served")
        options = _object(m.get("VolumeOptions"), "HostConfig.Mounts[].VolumeOptions")
        driver = _object(options.get("DriverConfig"), "HostConfig.Mounts[].VolumeOptions.DriverConfig")
        if driver.get("Name") not in (None, "", "local") or not _is_default(driver.get("Options")):
            raise _refuse(
                "HostConfig.Mounts",
                "VolumeOptions.DriverConfig: volume drivers and their options are refused",
            )
        if not _is_default(options.get("Subpath")):
            raise _refuse("HostConfig.Mounts", "VolumeOptions.Subpath is not supported")
        if kind == "tmpfs" and m.get("Source"):
            raise _bad("HostConfig.Mounts", "a tmpfs mount takes no Source")


def _check_tmpfs_options(value: Any) -> None:
    for target, options in _object(value, "HostConfig.Tmpfs").items():
        for opt in str(options or "").split(","):
            if opt.strip() in ("dev", "suid", "exec"):
                raise _refuse("HostConfig.Tmpfs", f"{target}: option {opt!r} (tmpfs is nodev,nosuid,noexec)")


def check_user(value: Any) -> None:
    """A 403 naming ``User`` when its numeric uid or gid is outside 0-65535 (exec checks it too)."""
    if _is_default(value):
        return
    for part in str(value).split(":", 1):
        if part.lstrip("-").isdigit() and not 0 <= int(part) <= MAX_ID:
            raise _refuse("User", f"{value!r}: uids and gids inside a container are 0-{MAX_ID}")


# ---- parsing -------------------------------------------------------------------------


def parse_create(body: Any, *, several_networks: bool = False) -> CreateRequest:
    """Check a create body with :func:`refuse_unsafe`, then parse it into a :class:`CreateRequest`.

    ``several_networks``: ``EndpointsConfig`` may name networks besides ``NetworkMode`` (the
    operator's socket; see ``CreateRequest.networks``), else that is a 400.
    Raises ``APIError`` 403 for a refused field, 400 for a malformed one (naming it).
    """
    refuse_unsafe(body)
    host = _host_config(body)
    image = body.get("Image")
    if not isinstance(image, str) or not image.strip():
        raise _bad("Image", "the body names no image")
    restart = _restart_policy(host.get("RestartPolicy"))
    auto_remove = _bool(host.get("AutoRemove"), "HostConfig.AutoRemove")
    if auto_remove and restart.name not in ("", "no"):
        raise APIError(400, "conflicting options: cannot combine AutoRemove (--rm) with a restart policy")
    cpu_quota = _int(host.get("CpuQuota"), "HostConfig.CpuQuota")
    nano_cpus = _int(host.get("NanoCpus"), "HostConfig.NanoCpus")
    if nano_cpus and cpu_quota:
        raise APIError(400, "conflicting options: NanoCpus (--cpus) and CpuQuota cannot both be set")
    network_mode, aliases, networks = _network(host.get("NetworkMode"), body, several_networks)
    if _bool(body.get("NetworkDisabled"), "NetworkDisabled"):
        network_mode, networks = "none", ()
    log_size, log_files = _log_config(host.get("LogConfig"))
    tmpfs = _tmpfs(host.get("Tmpfs"))
    mounts = _binds(host.get("Binds")) + _mounts(host.get("Mounts"))
    return CreateRequest(
        image=image.strip(),
        cmd=_strings_or_none(body.get("Cmd"), "Cmd"),
        entrypoint=_entrypoint(body.get("Entrypoint")),
        env=_env(body.get("Env")),
        labels=_labels(body.get("Labels")),
        workdir=_str(body.get("WorkingDir"), "WorkingDir"),
        user=_str(body.get("User"), "User"),
        hostname=_str(body.get("Hostname"), "Hostname"),
        tty=_bool(body.get("Tty"), "Tty"),
        open_stdin=_bool(body.get("OpenStdin"), "OpenStdin"),
        stdin_once=_bool(body.get("StdinOnce"), "StdinOnce"),
        attach_stdin=_bool(body.get("AttachStdin"), "AttachStdin"),
        attach_stdout=_bool(body.get("AttachStdout"), "AttachStdout"),
        attach_stderr=_bool(body.get("AttachStderr"), "AttachStderr"),
        init=_bool(host.get("Init"), "HostConfig.Init"),
        stop_signal=_signal(body.get("StopSignal")),
        stop_timeout=_nonneg(body.get("StopTimeout"), "StopTimeout"),
        healthcheck=_healthcheck(body.get("Healthcheck")),
        restart_policy=restart,
        auto_remove=auto_remove,
        memory=_nonneg(host.get("Memory"), "HostConfig.Memory"),
        memory_reservation=_nonneg(host.get("MemoryReservation"), "HostConfig.MemoryReservation"),
        nano_cpus=nano_cpus or None,
        cpu_quota=cpu_quota or None,
        cpu_period=_nonneg(host.get("CpuPeriod"), "HostConfig.CpuPeriod"),
        cpu_shares=_nonneg(host.get("CpuShares"), "HostConfig.CpuShares"),
        pids_limit=_pids(host.get("PidsLimit")),
        exposed_ports=tuple(_object(body.get("ExposedPorts"), "ExposedPorts")),
        ports=_ports(host.get("PortBindings")),
        publish_all_ports=_bool(host.get("PublishAllPorts"), "HostConfig.PublishAllPorts"),
        tmpfs=tmpfs,
        mounts=mounts
        + _anonymous(_object(body.get("Volumes"), "Volumes"), {m.target.rstrip("/") for m in mounts + tmpfs}),
        network_mode=network_mode,
        aliases=aliases,
        networks=networks,
        log_max_size=log_size,
        log_max_files=log_files,
    )


def _str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(name, "expected a string")
    return value


def _bool(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(name, "expected true or false")
    return value


def _int(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "expected an integer")
    return value


def _nonneg(value: Any, name: str) -> int | None:
    """A non-negative integer, None when unset (0 means unset too, as in Docker)."""
    number = _int(value, name)
    if number < 0:
        raise _bad(name, f"{number} is negative")
    return number or None


def _pids(value: Any) -> int | None:
    number = _int(value, "HostConfig.PidsLimit")
    return number if number > 0 else None  # 0 and -1 mean unlimited


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(name, "expected a list of strings")
    if any("\x00" in v for v in value):
        raise _bad(name, "NUL bytes are not allowed")
    return tuple(value)


def _strings_or_none(value: Any, name: str) -> tuple[str, ...] | None:
    return None if value is None else _strings(value, name)


def _entrypoint(value: Any) -> tuple[str, ...] | None:
    parts = _strings_or_none(value, "Entrypoint")
    if parts is not None and parts in ((), ("",)):
        return ()  # `--entrypoint ""`: no entrypoint at all, not the image's
    return parts


def _env(value: Any) -> tuple[str, ...]:
    env = _strings(value, "Env")
    for item in env:
        if not item or item.startswith("="):
            raise _bad("Env", f"{item!r} is not NAME=value")
    return env


def _labels(value: Any) -> dict[str, str]:
    labels = _object(value, "Labels")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise _bad("Labels", "expected an object of strings")
    return dict(labels)


def _signal(value: Any) -> str:
    signal = _str(value, "StopSignal").strip()
    if signal and not _SIGNAL_RE.match(signal.upper()):
        raise _bad("StopSignal", f"{signal!r} is not a signal name or number")
    return signal


def _healthcheck(value: Any) -> Healthcheck | None:
    if value is None:
        return None
    check = _object(value, "Healthcheck")
    test = _strings(check.get("Test"), "Healthcheck.Test")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise _bad("Healthcheck.Test", "the first item is NONE, CMD or CMD-SHELL")
    if test[:1] in (("CMD",), ("CMD-SHELL",)) and len(test) < 2:
        raise _bad("Healthcheck.Test", f"{test[0]} needs a command")
    numbers = {
        key: _int(check.get(key), f"Healthcheck.{key}")
        for key in ("Interval", "Timeout", "Retries", "StartPeriod", "StartInterval")
    }
    for key, number in numbers.items():
        if number < 0:
            raise _bad(f"Healthcheck.{key}", "must not be negative")
    for key in ("Interval", "Timeout", "StartInterval"):
        if 0 < numbers[key] < 1_000_000:
            raise _bad(f"Healthcheck.{key}", "at least 1ms")
    return Healthcheck(
        test=test,
        interval=numbers["Interval"],
        timeout=numbers["Timeout"],
        retries=numbers["Retries"],
        start_period=numbers["StartPeriod"],
        start_interval=numbers["StartInterval"],
    )


def _restart_policy(value: Any) -> RestartPolicy:
    policy = _object(value, "HostConfig.RestartPolicy")
    name = _str(policy.get("Name"), "HostConfig.RestartPolicy.Name")
    if name not in RESTART_POLICIES:
        raise _bad("HostConfig.RestartPolicy.Name", f"{name!r}: use no, always, unless-stopped or on-failure")
    retries = _int(policy.get("MaximumRetryCount"), "HostConfig.RestartPolicy.MaximumRetryCount")
    if retries < 0:
        raise _bad("HostConfig.RestartPolicy.MaximumRetryCount", "must not be negative")
    if retries and name != "on-failure":
        raise _bad("HostConfig.RestartPolicy", "maximum retry count applies to on-failure only")
    return RestartPolicy(name=name or "no", maximum_retry_count=retries)


def _port_key(key: str, name: str) -> tuple[int, str]:
    port, _, protocol = key.partition("/")
    protocol = protocol or "tcp"
    if not port.isdigit() or not 1 <= int(port) <= 65535 or protocol not in ("tcp", "udp"):
        raise _bad(name, f"{key!r}: expected PORT/tcp or PORT/udp with a port in 1-65535")
    return int(port), protocol


def _ports(value: Any) -> tuple[PortBinding, ...]:
    result: list[PortBinding] = []
    for key, bindings in _object(value, "HostConfig.PortBindings").items():
        port, protocol = _port_key(key, "HostConfig.PortBindings")
        if bindings is None:
            continue
        if not isinstance(bindings, list):
            raise _bad("HostConfig.PortBindings", f"{key}: expected a list of bindings")
        for binding in bindings:
            b = _object(binding, f"HostConfig.PortBindings[{key}]")
            host_ip = _str(b.get("HostIp"), "HostIp")
            host_port_text = _str(b.get("HostPort"), "HostPort")
            if host_port_text and (not host_port_text.isdigit() or not 0 <= int(host_port_text) <= 65535):
                raise _bad(
                    "HostConfig.PortBindings", f"{key}: host port {host_port_text!r} (one port, 0-65535)"
                )
            result.append(PortBinding(port, protocol, host_ip, int(host_port_text or 0)))
    return tuple(result)


def _size(text: str, name: str) -> int:
    match = re.fullmatch(r"([0-9]+)([kmgt]?)b?", text.strip().lower())
    if not match:
        raise _bad(name, f"size {text!r} (e.g. 64m)")
    exponent: int = " kmgt".index(match.group(2) or " ")
    return int(match.group(1)) * (1 << (10 * exponent))


def _tmpfs(value: Any) -> tuple[MountRequest, ...]:
    result: list[MountRequest] = []
    for target, options in _object(value, "HostConfig.Tmpfs").items():
        size, mode, read_only = DEFAULT_TMPFS_SIZE, None, False
        for opt in str(options or "").split(","):
            key, _, val = opt.strip().partition("=")
            if key == "size":
                size = _size(val, "HostConfig.Tmpfs")
            elif key == "mode":
                try:
                    mode = int(val, 8)
                except ValueError:
                    raise _bad("HostConfig.Tmpfs", f"{target}: mode {val!r} is not octal") from None
            elif key == "ro":
                read_only = True
            elif key not in ("", "rw", "noexec", "nosuid", "nodev"):
                raise _bad("HostConfig.Tmpfs", f"{target}: unknown option {opt!r} (size=, mode=, ro, rw)")
        result.append(MountRequest("tmpfs", str(target), size=size, mode=mode, read_only=read_only))
    return tuple(result)


def _binds(value: Any) -> tuple[MountRequest, ...]:
    result: list[MountRequest] = []
    for bind in _strings(value, "HostConfig.Binds"):
        parts = bind.split(":")
        if len(parts) not in (2, 3):
            raise _bad("HostConfig.Binds", f"{bind!r}: expected volume:/path[:ro|rw]")
        options = parts[2].split(",") if len(parts) == 3 else []
        for opt in options:
            if opt not in ("ro", "rw", "z", "Z", "nocopy", ""):
                raise _bad("HostConfig.Binds", f"{bind!r}: unknown option {opt!r}")
        result.append(MountRequest("volume", parts[1], source=parts[0], read_only="ro" in options))
    return tuple(result)


def _mounts(value: Any) -> tuple[MountRequest, ...]:
    result: list[MountRequest] = []
    for mount in value or ():
        m = _object(mount, "HostConfig.Mounts[]")
        kind = m.get("Type") or "volume"
        target = _str(m.get("Target"), "HostConfig.Mounts[].Target")
        read_only = _bool(m.get("ReadOnly"), "HostConfig.Mounts[].ReadOnly")
        if kind == "tmpfs":
            options = _object(m.get("TmpfsOptions"), "HostConfig.Mounts[].TmpfsOptions")
            size = _int(options.get("SizeBytes"), "TmpfsOptions.SizeBytes") or DEFAULT_TMPFS_SIZE
            mode = options.get("Mode")
            if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int)):
                raise _bad("HostConfig.Mounts[].TmpfsOptions.Mode", "expected an integer")
            result.append(MountRequest("tmpfs", target, size=size, mode=mode, read_only=read_only))
        else:
            source = _str(m.get("Source"), "HostConfig.Mounts[].Source")
            result.append(MountRequest("volume", target, source=source, read_only=read_only))
    return tuple(result)


def with_image_defaults(
    req: CreateRequest, *, volumes: Iterable[str], exposed_ports: Iterable[str]
) -> CreateRequest:
    """``req`` completed from its image, as dockerd does: an anonymous volume on each ``VOLUME``
    that no mount covers, and the image's ``EXPOSE``d ports (``-P`` publishes them; ``ps`` shows them)."""
    taken = {m.target.rstrip("/") for m in req.mounts + req.tmpfs}
    extra = _anonymous(volumes, taken)
    exposed = tuple(
        dict.fromkeys((*req.exposed_ports, *(p if "/" in p else f"{p}/tcp" for p in exposed_ports)))
    )
    return replace(req, mounts=req.mounts + extra, exposed_ports=exposed)


def _anonymous(targets: Iterable[Any], taken: set[str]) -> tuple[MountRequest, ...]:
    """An anonymous volume on each of ``targets`` (``-v /data``) that no other mount covers."""
    return tuple(MountRequest("volume", str(t)) for t in targets if str(t).rstrip("/") not in taken)


def _network(
    value: Any, body: Mapping[str, Any], several: bool
) -> tuple[str, tuple[str, ...], tuple[NetworkJoin, ...]]:
    """``NetworkMode`` with its endpoint's aliases, and the other ``EndpointsConfig`` networks
    (API 1.44 creates a container on several networks at once), in the order sent; without
    ``several`` another network is a 400."""
    mode = _str(value, "HostConfig.NetworkMode") or "default"
    name = "bridge" if mode == "default" else mode
    networking = _object(body.get("NetworkingConfig"), "NetworkingConfig")
    endpoints = _object(networking.get("EndpointsConfig"), "NetworkingConfig.EndpointsConfig")
    aliases: tuple[str, ...] = ()
    others: list[NetworkJoin] = []
    for endpoint_name, endpoint in endpoints.items():
        config = endpoint_config(endpoint, f"NetworkingConfig.EndpointsConfig[{endpoint_name}]")
        if endpoint_name in (mode, name):
            aliases = config.aliases
        else:
            others.append(NetworkJoin(endpoint_name, config.aliases))
    if others and not several:
        raise _bad(
            "NetworkingConfig.EndpointsConfig",
            f"{others[0].name!r} is not the NetworkMode {mode!r}: a container is created on one network here",
        )
    if others and not endpoints.keys() & {mode, name} and mode == "default":
        # no NetworkMode: the first endpoint is the main network (the default bridge is not joined)
        name, aliases, others = others[0].name, others[0].aliases, others[1:]
    return name, aliases, tuple(others)


def endpoint_config(value: Any, where: str) -> NetworkJoin:
    """An ``EndpointSettings`` object (create's EndpointsConfig entry, connect's EndpointConfig):
    its ``Aliases``; static addresses and driver options are refused (403), naming ``where``."""
    config = _object(value, where)
    aliases = _strings(config.get("Aliases"), f"{where}.Aliases")
    for key in ("IPAMConfig", "DriverOpts", "IPAddress", "MacAddress"):
        if not _is_default(config.get(key)):
            raise _refuse(f"{where}.{key}", "static addresses and driver options are not supported")
    return NetworkJoin("", aliases)


def _log_config(value: Any) -> tuple[int | None, int | None]:
    log = _object(value, "HostConfig.LogConfig")
    kind = _str(log.get("Type"), "HostConfig.LogConfig.Type")
    if kind not in ("", "json-file", "local", "k8s-file"):
        raise _refuse(
            "HostConfig.LogConfig", f"log driver {kind!r}: the engine keeps logs in a file (json-file)"
        )
    size = files = None
    for key, val in _object(log.get("Config"), "HostConfig.LogConfig.Config").items():
        if key == "max-size":
            size = _size(str(val), "HostConfig.LogConfig max-size")
        elif key == "max-file":
            if not str(val).isdigit() or int(val) < 1:
                raise _bad("HostConfig.LogConfig", f"max-file {val!r}")
            files = int(val)
        else:
            raise _refuse("HostConfig.LogConfig", f"log option {key!r} is not supported (max-size, max-file)")
    return size, files
