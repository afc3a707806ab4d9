"""Plain dataclasses for networks: a network record, a published port, a container's attachment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NONE = "none"
HOST = "host"
BRIDGE = "bridge"
#: Networks a tenant may never ask for: the panel refuses them, the engine needs ``allow_privileged``.
PRIVILEGED_NETWORKS = frozenset({HOST})
DEFAULT_NETWORK_PREFIX = "bridge."


def default_network_name(tenant: str) -> str:
    """The name of ``tenant``'s default bridge network (what ``--network bridge`` means)."""
    return f"{DEFAULT_NETWORK_PREFIX}{tenant}"


@dataclass(frozen=True)
class PortMapping:
    """One published port: ``host_ip:host_port`` on the host goes to ``container_port`` inside."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = "0.0.0.0"

    def key(self) -> str:
        """What must be unique on a host: protocol, address and port."""
        return f"{self.protocol}/{self.host_ip}/{self.host_port}"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortMapping:
        """The inverse of :meth:`to_dict`."""
        return cls(
            host_port=int(data["host_port"]),
            container_port=int(data["container_port"]),
            protocol=str(data.get("protocol", "tcp")),
            host_ip=str(data.get("host_ip", "0.0.0.0")),
        )


@dataclass
class Network:
    """A network as the engine records it in ``<root>/networks/<name>/network.json``."""

    name: str
    id: str
    tenant: str
    driver: str
    subnet: str
    gateway: str
    bridge: str
    internal: bool = False
    mtu: int = 1500
    vni: int = 0
    vxlan: str = ""
    peers: list[str] = field(default_factory=list)
    underlay_ip: str = ""
    ip_range: str = ""
    created: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.partition("/")[2])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Network:
        """Rebuild a record, ignoring keys this version does not know."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class NetworkJoin:
    """One network a container joins, with the extra names it has there."""

    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteEndpoint:
    """A container of an overlay network that runs on another host, as this host's containers see it."""

    name: str
    ip: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """What joining a network gave one container (``interface`` is its name inside: eth0, eth1...)."""

    network: str
    ip_address: str = ""
    netns_path: str | None = None
    ports: tuple[PortMapping, ...] = ()
    hosts: str = ""
    resolv_conf: str = ""
    aliases: tuple[str, ...] = ()
    interface: str = ""

    def record(self) -> dict[str, Any]:
        """The container record's entry for this attachment (see Container.networks)."""
        return {
            "network": self.network,
            "ip_address": self.ip_address,
            "aliases": list(self.aliases),
            "interface": self.interface,
        }
