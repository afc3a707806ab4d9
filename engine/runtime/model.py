"""Plain dataclasses for containers: what the caller asks for and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.cgroups.resources import Resources
from engine.networks.model import NetworkJoin, PortMapping
from engine.volumes.spec import MountSpec

DEFAULT_TENANT = "default"
ALIVE = ("running", "paused")
"""Statuses of a container whose process runs (a paused one is frozen, not gone)."""


@dataclass(frozen=True)
class LogOptions:
    """Size-based rotation of a container's log file."""

    max_size: int = 10 * 1024 * 1024
    max_files: int = 3


@dataclass(frozen=True)
class SecretFile:
    """A secret the container reads as the file ``/run/secrets/<name>`` (kept in memory only).

    ``data`` never shows in a repr, so logging a spec cannot leak it.
    """

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ContainerSpec:
    """What to run. Empty fields fall back to the image's config, like `docker run`."""

    image: str
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    name: str | None = None
    tenant: str = DEFAULT_TENANT
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    init: bool = False
    stop_signal: str | None = None
    stop_timeout: int = 10
    labels: dict[str, str] = field(default_factory=dict)
    log: LogOptions = field(default_factory=LogOptions)
    resources: Resources = field(default_factory=Resources)
    # "none" (loopback only), "bridge" (the tenant's default network), a network name, or
    # "host" (operator only: refused unless allow_privileged, which the panel never sets).
    network: str = "none"
    network_aliases: tuple[str, ...] = ()
    # Several networks, joined in order (eth0, eth1, ...): when given, ``network`` and
    # ``network_aliases`` are ignored. The first one with a gateway (a bridge) gives the default
    # route, resolv.conf and the published ports; an overlay adds only its subnet's route.
    networks: tuple[NetworkJoin, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    allow_privileged: bool = False
    # Volumes (created on first use for ``tenant``), tmpfs and host binds; a host bind
    # ("bind") is an operator feature, refused unless allow_privileged.
    mounts: tuple[MountSpec, ...] = ()
    # Files in a per-container tmpfs at /run/secrets, owned by the process user, mode 0400.
    secrets: tuple[SecretFile, ...] = ()
    # Interactive containers (`run -it`): the process gets a terminal (``tty``) and/or a stdin
    # that clients write to through attach (``open_stdin``). With ``stdin_once`` the stdin is
    # closed when the first attached client detaches (`docker run -i`), else it stays open.
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False

    def network_joins(self) -> tuple[NetworkJoin, ...]:
        """The networks this spec asks for: ``networks``, else ``network`` with ``network_aliases``."""
        return self.networks or (NetworkJoin(self.network, self.network_aliases),)


@dataclass(frozen=True)
class ExecSpec:
    """A process to run inside a running container."""

    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    user: str | None = None
    workdir: str | None = None


@dataclass
class Container:
    """A container as the engine records it on disk.

    ``status`` is one of ``created``, ``running``, ``paused``, ``exited``, ``oom-killed``.
    Times are ISO-8601 strings in UTC ('' when not reached yet).
    """

    id: str
    name: str
    tenant: str
    image: str
    image_id: str
    command: list[str]
    status: str
    created: str
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    pid: int = 0
    conmon_pid: int = 0
    uid_base: int = 0
    hostname: str = ""
    user: str = ""
    env: list[str] = field(default_factory=list)
    workdir: str = "/"
    init: bool = False
    stop_signal: str = "SIGTERM"
    stop_timeout: int = 10
    labels: dict[str, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    cgroup_path: str = ""
    log_max_size: int = LogOptions.max_size
    log_max_files: int = LogOptions.max_files
    restart_count: int = 0
    oom_killed_at: str = ""
    resources: Resources = field(default_factory=Resources)
    # the first network's (compat); ``networks`` has every attachment
    network: str = "none"
    ip_address: str = ""
    network_aliases: list[str] = field(default_factory=list)
    # one {"network", "ip_address", "aliases", "interface"} per network, in interface order
    networks: list[dict[str, Any]] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    netns_path: str = ""
    mounts: list[dict[str, Any]] = field(default_factory=list)  # MountSpec.to_dict() of each
    secrets: list[str] = field(default_factory=list)  # names only: the values live in memory
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the id."""
        return self.id[:12]

    @property
    def is_running(self) -> bool:
        """Whether its process lives: running, or paused (frozen, as Docker's State.Running)."""
        return self.status in ALIVE

    def attachments(self) -> list[dict[str, Any]]:
        """Every network attachment (records from before multi-network containers: the one)."""
        if self.networks:
            return [dict(a) for a in self.networks]
        if self.network in ("", "none", "host"):
            return []
        return [
            {
                "network": self.network,
                "ip_address": self.ip_address,
                "aliases": list(self.network_aliases),
                "interface": "eth0",
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = dict(self.__dict__)
        data["resources"] = self.resources.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Container:
        """Rebuild a record, ignoring keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["resources"] = Resources.from_dict(known.get("resources"))
        return cls(**known)
