"""The parsed compose project: frozen dataclasses, our own spec (never the YAML passed through).

This is a contract shared with the panel's stacks: keep the names.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuildDef:
    """``build:``: ``context`` is an absolute path inside the project's base dir."""

    context: str
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class PortDef:
    """One port: ``published`` None = expose on the networks only (or a host port the engine picks)."""

    target: int
    published: int | None = None
    protocol: str = "tcp"
    host_ip: str | None = None


@dataclass(frozen=True)
class MountDef:
    """A mount: ``volume`` (source = project volume key, None = anonymous), ``tmpfs`` or ``bind``."""

    type: str
    source: str | None
    target: str
    read_only: bool = False
    tmpfs_size: int | None = None


@dataclass(frozen=True)
class HealthcheckDef:
    """``healthcheck:``: ``test`` is an argv, or ``(script,)`` run by ``/bin/sh -c`` when ``shell``.

    Durations are seconds (None = the engine's default).
    """

    test: tuple[str, ...] = ()
    shell: bool = False
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    retries: int | None = None
    disabled: bool = False


@dataclass(frozen=True)
class SecretRef:
    """A service's use of a project secret, mounted at ``target`` (``/run/secrets/<source>`` default)."""

    source: str
    target: str


@dataclass(frozen=True)
class Service:
    """One ``services.<name>`` entry, normalized (short and long syntaxes give the same value)."""

    name: str
    image: str | None = None
    build: BuildDef | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    ports: tuple[PortDef, ...] = ()
    expose: tuple[int, ...] = ()
    volumes: tuple[MountDef, ...] = ()
    networks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    depends_on: dict[str, str] = field(default_factory=dict)
    healthcheck: HealthcheckDef | None = None
    restart: str = "no"
    replicas: int = 1
    cpus: float | None = None
    memory_bytes: int | None = None
    pids: int | None = None
    secrets: tuple[SecretRef, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    working_dir: str | None = None
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    init: bool = False
    line: int = 0


@dataclass(frozen=True)
class NetworkDef:
    """A project network (``<project>_<name>`` on the engine unless ``external``)."""

    name: str
    external: bool = False
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeDef:
    """A project named volume (``<project>_<name>`` on the engine unless ``external``)."""

    name: str
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretDef:
    """A project secret: ``external`` (the tenant's secret of that name) or ``file`` (absolute path)."""

    name: str
    external: bool = False
    file: str | None = None


@dataclass(frozen=True)
class Project:
    """A whole compose file, validated and normalized."""

    name: str
    services: dict[str, Service] = field(default_factory=dict)
    networks: dict[str, NetworkDef] = field(default_factory=dict)
    volumes: dict[str, VolumeDef] = field(default_factory=dict)
    secrets: dict[str, SecretDef] = field(default_factory=dict)
