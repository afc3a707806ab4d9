"""Parsing of published ports (`-p [IP:]HOSTPORT:PORT[/udp]`) and the host-side in-use check."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket

from engine.errors import Conflict, InvalidSpec
from engine.networks.model import PortMapping

PROTOCOLS = ("tcp", "udp")


def _port(text: str, what: str, spec: str) -> int:
    if not text.isdigit():
        raise InvalidSpec(f"invalid port mapping {spec!r}: {what} {text!r} is not a number (1-65535)")
    value = int(text)
    if not 1 <= value <= 65535:
        raise InvalidSpec(f"invalid port mapping {spec!r}: {what} {value} is out of range (1-65535)")
    return value


def parse_publish(spec: str) -> PortMapping:
    """Parse one `-p` value: ``[IP:]HOSTPORT:PORT[/tcp|/udp]``.

    Raises InvalidSpec for a missing host port, a port of 0 or above 65535, a
    bad address or an unknown protocol.
    """
    text, _, protocol = spec.strip().partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidSpec(f"invalid port mapping {spec!r}: protocol must be tcp or udp")
    parts = text.rsplit(":", 2)
    if len(parts) == 2:
        host_ip, (host_port, container_port) = "0.0.0.0", parts
    elif len(parts) == 3:
        host_ip, host_port, container_port = parts
        host_ip = host_ip.strip("[]") or "0.0.0.0"
    else:
        raise InvalidSpec(f"invalid port mapping {spec!r}: use [IP:]HOSTPORT:PORT[/udp], e.g. 8080:80")
    try:
        address = ipaddress.ip_address(host_ip)
    except ValueError:
        raise InvalidSpec(f"invalid port mapping {spec!r}: {host_ip!r} is not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise InvalidSpec(f"invalid port mapping {spec!r}: only IPv4 host addresses are supported")
    return PortMapping(
        host_port=_port(host_port, "host port", spec),
        container_port=_port(container_port, "container port", spec),
        protocol=protocol,
        host_ip=str(address),
    )


def check_duplicates(ports: tuple[PortMapping, ...]) -> None:
    """Raise InvalidSpec if two mappings of one request claim the same host port."""
    seen: set[tuple[str, int]] = set()
    for p in ports:
        key = (p.protocol, p.host_port)
        if key in seen:
            raise InvalidSpec(f"host port {p.host_port}/{p.protocol} is published twice")
        seen.add(key)


def host_port_free(mapping: PortMapping) -> None:
    """Raise Conflict if another process on the host holds ``mapping``'s host port.

    Binds the port for a moment (with SO_REUSEADDR, so connections in
    TIME_WAIT do not count). Raises InvalidSpec if the address is not one of
    this host's.
    """
    kind = socket.SOCK_STREAM if mapping.protocol == "tcp" else socket.SOCK_DGRAM
    with contextlib.closing(socket.socket(socket.AF_INET, kind)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((mapping.host_ip, mapping.host_port))
            if kind == socket.SOCK_STREAM:
                sock.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"host port {mapping.host_ip}:{mapping.host_port}/{mapping.protocol} is already in use "
                    "by another process; choose another host port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidSpec(
                    f"cannot publish on {mapping.host_ip}: it is not an address of this host"
                ) from None
            raise


def free_port(protocol: str, host_ip: str) -> int:
    """A host port nothing listens on now (for ``-p 80``, ``-P`` and compose's ``ports: ["80"]``)."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host_ip, 0))
        port: int = sock.getsockname()[1]
        return port
