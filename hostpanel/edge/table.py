"""The routing table: every hostname an app answers at -> its serving replicas' host ports.

Built from :func:`hostpanel.domains.hostnames.app_hostnames` (which names) and
:func:`hostpanel.deployments.rotation.serving_replicas` (who takes requests). A hostname
belongs to one app only: if two apps claim the same name (``a-b`` of tenant ``c`` and ``a``
of tenant ``b-c`` both make ``a-b-c.<domain>``), the app created first keeps it and the
other gets no route, so no tenant's app ever appears under another's name.
"""

from __future__ import annotations

import logging
import threading
import time

from hostpanel.deployments.models import App
from hostpanel.deployments.rotation import serving_replicas
from hostpanel.domains.hostnames import app_hostnames
from hostpanel.edge.routes import HOSTNAME_RE, Routes
from hostpanel.hosts.models import Host

log = logging.getLogger(__name__)


def host_key(host: Host) -> str:
    """The DNS label naming ``host`` in the table (``h<pk>``: host names need not be DNS labels)."""
    return f"h{host.pk}"


def web_apps() -> list[App]:
    """Apps whose current release declares an HTTP port, oldest first (first claim wins)."""
    return list(
        App.objects.filter(current_release__http_port__isnull=False)
        .select_related("tenant", "current_release")
        .order_by("created_at", "pk")
    )


def claimed_hostnames() -> dict[str, App]:
    """hostname -> the one app it routes to (collisions: the oldest app keeps the name)."""
    owners: dict[str, App] = {}
    for app in web_apps():
        for name in app_hostnames(app):
            name = name.lower().rstrip(".")
            if not HOSTNAME_RE.match(name):
                log.warning("app %s: hostname %r is not a DNS name; not routed", app, name)
                continue
            if name in owners:
                log.warning("hostname %s: claimed by %s and %s; the first keeps it", name, owners[name], app)
                continue
            owners[name] = app
    return owners


def build_routes(generation: int = 0) -> Routes:
    """The current routing table (hostnames with no serving replica are left out: NXDOMAIN)."""
    hosts: dict[str, str] = {}
    routes: dict[str, tuple[tuple[str, int], ...]] = {}
    targets_of: dict[int, tuple[tuple[str, int], ...]] = {}
    for name, app in sorted(claimed_hostnames().items()):
        if app.pk not in targets_of:
            targets_of[app.pk] = _targets(app, hosts)
        if targets_of[app.pk]:
            routes[name] = targets_of[app.pk]
    return Routes(generation, hosts, routes)


def _targets(app: App, hosts: dict[str, str]) -> tuple[tuple[str, int], ...]:
    """(host key, published port) of each serving replica of ``app``; fills ``hosts``."""
    found: list[tuple[str, int]] = []
    for replica in serving_replicas(app).exclude(host__state=Host.State.DOWN).order_by("index"):
        host, http_port = replica.host, replica.release.http_port
        if host is None or not host.address or http_port is None:
            continue
        for port in replica.ports or []:
            tcp = port.get("protocol", "tcp") == "tcp"
            if tcp and port.get("container_port") == http_port and isinstance(port.get("host_port"), int):
                hosts[host_key(host)] = host.address
                found.append((host_key(host), port["host_port"]))
    return tuple(sorted(set(found)))


# Caddy's ask endpoint is anonymous: whoever floods it gets one walk over the apps per
# SERVED_MAX_AGE seconds, not one per request.
SERVED_MAX_AGE = 2.0
_served: tuple[float, frozenset[str]] = (float("-inf"), frozenset())
_served_lock = threading.Lock()


def served_hostnames(max_age: float = SERVED_MAX_AGE) -> frozenset[str]:
    """Every hostname one of our apps answers at, at most ``max_age`` seconds old."""
    global _served
    with _served_lock:
        taken, names = _served
        if time.monotonic() - taken > max_age:
            names = frozenset(claimed_hostnames())
            _served = (time.monotonic(), names)
        return names


def forget_served_hostnames() -> None:
    """Drop the cached set (tests; a new app is otherwise seen within ``SERVED_MAX_AGE``)."""
    global _served
    with _served_lock:
        _served = (float("-inf"), frozenset())


def is_served(hostname: str) -> bool:
    """True when ``hostname`` (any case, trailing dot allowed) is a name one of our apps answers at."""
    name = hostname.strip().lower().rstrip(".")
    return bool(HOSTNAME_RE.match(name)) and name in served_hostnames()
