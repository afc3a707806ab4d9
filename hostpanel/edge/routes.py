"""The routing table as it travels from the panel to the host agents (plain data, no Django).

JSON shape (``Routes.to_json``)::

    {"generation": 7,
     "hosts": {"h3": "10.0.0.3"},                       # host key -> address
     "routes": {"web-demo.localhost": [["h3", 30001]]}}  # hostname -> [(host key, published port)]

A table with a higher generation replaces a lower one, never the reverse.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hostpanel.domains.names import lookup_addresses

# One DNS label of a host key: "h<primary key>".
HOST_KEY_RE = re.compile(r"^h[0-9]{1,18}$")
# A hostname as it may appear in the table: lowercase LDH labels (IDNA already applied), 1-253
# chars; a leading "*." makes it a wildcard for exactly one more label.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$)(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}$")


class BadRoutes(ValueError):
    """A routing table that does not have the expected shape."""


@dataclass(frozen=True)
class Routes:
    """Which hosts exist (key -> address) and which replicas serve each hostname."""

    generation: int = 0
    hosts: Mapping[str, str] = field(default_factory=dict)
    routes: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Routes:
        """Parse and check a table; raise :class:`BadRoutes` saying what is wrong."""
        if not isinstance(data, dict):
            raise BadRoutes("a routing table is a JSON object")
        generation = data.get("generation")
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise BadRoutes("generation: a non-negative integer")
        hosts = data.get("hosts", {})
        routes = data.get("routes", {})
        if not isinstance(hosts, dict) or not isinstance(routes, dict):
            raise BadRoutes("hosts and routes are JSON objects")
        for key, address in hosts.items():
            if not HOST_KEY_RE.match(str(key)) or not isinstance(address, str) or not address:
                raise BadRoutes(f"hosts: bad entry {key!r}")
        parsed: dict[str, tuple[tuple[str, int], ...]] = {}
        for name, targets in routes.items():
            if not isinstance(name, str) or not HOSTNAME_RE.match(name):
                raise BadRoutes(f"routes: {name!r} is not a lowercase DNS name")
            if not isinstance(targets, list):
                raise BadRoutes(f"routes[{name}]: a list of [host key, port]")
            pairs = []
            for target in targets:
                ok = isinstance(target, list | tuple) and len(target) == 2
                key, port = (target[0], target[1]) if ok else (None, None)
                if key not in hosts or isinstance(port, bool) or not isinstance(port, int):
                    raise BadRoutes(f"routes[{name}]: bad target {target!r}")
                if not 1 <= port <= 65535:
                    raise BadRoutes(f"routes[{name}]: port {port} out of range")
                pairs.append((str(key), port))
            parsed[name] = tuple(pairs)
        return cls(generation, dict(hosts), parsed)

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "hosts": dict(self.hosts),
            "routes": {name: [list(t) for t in targets] for name, targets in self.routes.items()},
        }

    def digest(self) -> str:
        """A digest of the content (not the generation): equal tables route the same way."""
        body = self.to_json() | {"generation": 0}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


Lookup = Callable[[str], list[str]]


def with_ip_addresses(routes: Routes, lookup: Lookup = lookup_addresses) -> Routes:
    """``routes`` with every host address an IP address (names resolved through ``lookup``).

    A host whose name does not resolve is dropped together with its targets: nothing
    could reach it anyway.
    """
    hosts: dict[str, str] = {}
    for key, address in routes.hosts.items():
        try:
            hosts[key] = str(ipaddress.ip_address(address))
        except ValueError:
            try:
                found = lookup(address)
            except OSError:
                found = []
            if found:
                hosts[key] = found[0]
    kept = {name: tuple(t for t in targets if t[0] in hosts) for name, targets in routes.routes.items()}
    return Routes(routes.generation, hosts, kept)
