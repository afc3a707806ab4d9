"""What a host agent runs for the edge: the DNS server, the last table on disk, Caddy's config.

:class:`EdgeAgent` is made once by ``manage.py hostagent``; the ``apply_routes`` task
(hostpanel/agent/edge_tasks.py) hands it each table the panel publishes. The last table is kept
in ``<state dir>/routes.json`` so a restarted agent answers at once, before the panel
resends it; the DNS port is kept there too so Caddy's config (which names the port) does
not change across agent restarts.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hostpanel.edge.caddy import CaddyAdmin, CaddyError, EdgeSettings, base_config
from hostpanel.edge.dns import EdgeDNS, RoutesResolver
from hostpanel.edge.routes import BadRoutes, Routes, with_ip_addresses

log = logging.getLogger(__name__)

_current: EdgeAgent | None = None


def current() -> EdgeAgent | None:
    """The edge agent of this process (None outside a host agent)."""
    return _current


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (mode 0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class EdgeAgent:
    """The DNS server answering from the routing table, and the Caddy it configures (if any)."""

    def __init__(self, state_dir: Path, caddy: dict[str, Any] | None, dns_port: int = 0) -> None:
        """``caddy``: the :class:`EdgeSettings` fields but ``dns_port`` (None: no Caddy on this host)."""
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.resolver = RoutesResolver(with_ip_addresses(self._load_routes()))
        self.dns = EdgeDNS(self.resolver, port=self._dns_port(dns_port))
        _write_private(self.state_dir / "dns_port", str(self.dns.port))
        self.settings = EdgeSettings(dns_port=self.dns.port, **caddy) if caddy is not None else None
        self._caddy_problem = ""  # the last failure to reach Caddy, logged once until it changes

    @property
    def routes_file(self) -> Path:
        return self.state_dir / "routes.json"

    def _load_routes(self) -> Routes:
        try:
            return Routes.from_json(json.loads(self.routes_file.read_text()))
        except FileNotFoundError:
            return Routes()
        except (ValueError, BadRoutes) as exc:
            log.warning("edge: ignoring %s (%s); waiting for the panel's table", self.routes_file, exc)
            return Routes()

    def _dns_port(self, asked: int) -> int:
        """``asked``, else the port of the previous run (kept so Caddy's config stays the same)."""
        if asked:
            return asked
        try:
            previous = int((self.state_dir / "dns_port").read_text())
        except (OSError, ValueError):
            return 0
        try:  # still free?
            probe = EdgeDNS(RoutesResolver(), port=previous)
        except OSError:
            return 0
        probe.stop()
        return previous

    def start(self) -> None:
        global _current
        self.dns.start()
        _current = self
        generation = self.resolver.routes.generation
        log.info("edge: DNS on 127.0.0.1:%s, routes generation %s", self.dns.port, generation)
        self.ensure_caddy()

    def stop(self) -> None:
        global _current
        self.dns.stop()
        if _current is self:
            _current = None

    @property
    def generation(self) -> int:
        """The generation of the routing table this host serves (0: none yet)."""
        return int(self.resolver.routes.generation)

    def apply(self, table: Any) -> bool:
        """Serve ``table`` unless ours is newer; persist it; True if it replaced ours."""
        routes = with_ip_addresses(Routes.from_json(table))
        if not self.resolver.swap(routes):
            return False
        _write_private(self.routes_file, json.dumps(Routes.from_json(table).to_json()))
        return True

    def ensure_caddy(self) -> bool:
        """Load the base config into this host's Caddy unless it runs it already; True if loaded."""
        if self.settings is None:
            return False
        admin = CaddyAdmin(self.settings.admin_socket)
        try:
            loaded = admin.ensure(base_config(self.settings))
        except CaddyError as exc:
            if str(exc) != self._caddy_problem:
                log.warning("edge: %s (is caddy running? `make run` starts it)", exc)
            self._caddy_problem = str(exc)
            return False
        if self._caddy_problem:
            log.info("edge: caddy answers again on %s", self.settings.admin_socket)
            self._caddy_problem = ""
        if loaded:
            log.info("edge: loaded the proxy config into caddy (%s)", self.settings.admin_socket)
        return loaded


def caddy_fields(admin_socket: str) -> dict[str, Any] | None:
    """The :class:`EdgeSettings` fields (but the DNS port) from the settings; None without a socket.

    Raises ValueError saying what is wrong (e.g. a TLS mode this host cannot do)."""
    from django.conf import settings

    if not admin_socket:
        return None
    panel = str(settings.HOSTPANEL_EDGE_PANEL_URL).rstrip("/")
    fields = {
        "admin_socket": Path(admin_socket),
        "storage_dir": Path(settings.HOSTPANEL_CADDY_DATA),
        "http_port": int(settings.HOSTPANEL_PROXY_HTTP_PORT),
        "https_port": int(settings.HOSTPANEL_PROXY_HTTPS_PORT),
        "bind": str(settings.HOSTPANEL_PROXY_BIND),
        "tls": str(settings.HOSTPANEL_TLS),
        "acme_email": str(settings.HOSTPANEL_ACME_EMAIL),
        "panel_url": panel,
        "ask_url": f"{panel}/edge/ask",
    }
    EdgeSettings(dns_port=1, **fields)  # checks them
    return fields
