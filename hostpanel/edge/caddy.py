"""Caddy's one static config and its admin API on a unix socket (plain Python, no Django).

The config never changes when apps, replicas or domains change (Caddy 2.6 closes every
proxied websocket on any config change): one catch-all route proxies to the SRV records
``{http.request.host}.routes.hostpanel.`` that the agent's DNS server
(:mod:`hostpanel.edge.dns`) answers from the routing table, refreshed every second.
The objects carry ``@id``s (``hostpanel-http``, ``hostpanel-https``, ``hostpanel-apps``,
``hostpanel-panel``, ``hostpanel-tls``) so they can be read or patched under ``/id/<id>``.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hostpanel.domains.edge_routes import https_redirect_route
from hostpanel.domains.tls import MODES as TLS_MODES
from hostpanel.domains.tls import caddy_issuer, storage_key

ROUTES_SUFFIX = ".routes.hostpanel."
# Paths the proxy sends to the panel instead of an app, on every hostname (ownership tokens).
PANEL_PATHS = ("/.well-known/hostpanel/*",)


class CaddyError(RuntimeError):
    """Caddy's admin API refused a request or could not be reached."""


@dataclass(frozen=True)
class EdgeSettings:
    """What the base config depends on; equal settings give an identical config."""

    admin_socket: Path
    storage_dir: Path
    dns_port: int
    http_port: int = 8080
    https_port: int = 8443
    bind: str = ""  # "" = every address; "127.0.0.1" in tests
    tls: str = "internal"
    ask_url: str = "http://127.0.0.1:8000/edge/ask"
    panel_url: str = "http://127.0.0.1:8000"
    acme_email: str = ""

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"HOSTPANEL_TLS: {self.tls!r} is not a mode; use one of {', '.join(TLS_MODES)}")
        for name in ("http_port", "https_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ValueError(f"{name}: {port} is not a TCP port")
        if self.http_port == self.https_port:
            raise ValueError("the proxy's HTTP and HTTPS ports must differ")


def _listen(settings: EdgeSettings, port: int) -> list[str]:
    return [f"{settings.bind}:{port}"]


def _resolver(settings: EdgeSettings) -> dict[str, Any]:
    return {"addresses": [f"127.0.0.1:{settings.dns_port}"]}


def apps_route(settings: EdgeSettings) -> dict[str, Any]:
    """The catch-all: every request goes to the replicas the SRV record of its Host names."""
    return {
        "@id": "hostpanel-apps",
        "handle": [
            {
                "handler": "reverse_proxy",
                "dynamic_upstreams": {
                    "source": "srv",
                    "name": "{http.request.host}" + ROUTES_SUFFIX,
                    "refresh": "1s",
                    "resolver": _resolver(settings),
                },
                # A replica whose listen queue overflows drops SYNs, which the kernel resends after
                # 1 s and 3 s: the dial waits past the second resend instead of answering 502.
                "transport": {"protocol": "http", "resolver": _resolver(settings), "dial_timeout": "3500ms"},
                # A replica that refuses a connection (stopping, not listening yet): try another.
                "load_balancing": {"try_duration": "4s", "try_interval": "100ms"},
                "flush_interval": -1,  # streamed responses reach the client as they are written
            }
        ],
    }


def panel_route(settings: EdgeSettings) -> dict[str, Any]:
    """``PANEL_PATHS`` on any hostname go to the panel (the Host header says which domain asked)."""
    url = urlsplit(settings.panel_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    upstream: dict[str, Any] = {"dial": f"{url.hostname}:{port}"}
    transport: dict[str, Any] = {"protocol": "http"}
    if url.scheme == "https":
        transport["tls"] = {}
    return {
        "@id": "hostpanel-panel",
        "match": [{"path": list(PANEL_PATHS)}],
        "handle": [
            {
                "handler": "reverse_proxy",
                "upstreams": [upstream],
                "transport": transport,
                # The panel checks its own Host; the asked name travels in X-Forwarded-Host
                # (set here, so a client's own X-Forwarded-Host never gets through).
                "headers": {
                    "request": {"set": {"Host": [url.netloc], "X-Forwarded-Host": ["{http.request.host}"]}}
                },
            }
        ],
        "terminal": True,
    }


def _issuer(settings: EdgeSettings) -> dict[str, Any]:
    return caddy_issuer(settings.tls, settings.acme_email)


def base_config(settings: EdgeSettings) -> dict[str, Any]:
    """The whole Caddy config: admin on the unix socket, an HTTP and an HTTPS server, on-demand TLS."""
    routes = [panel_route(settings), apps_route(settings)]
    # Plain HTTP: 308 to HTTPS for a name once Caddy holds its certificate (domains part).
    certificates = settings.storage_dir / "certificates" / storage_key(settings.tls)
    http_routes = [routes[0], https_redirect_route(str(certificates), settings.https_port), routes[1]]
    return {
        "admin": {"listen": f"unix/{settings.admin_socket}", "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(settings.storage_dir)},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "http_port": settings.http_port,
                "https_port": settings.https_port,
                "servers": {
                    "hostpanel-http": {
                        "@id": "hostpanel-http",
                        "listen": _listen(settings, settings.http_port),
                        "routes": http_routes,
                        # Redirects to HTTPS are the redirect route's per-name decision (not Caddy's);
                        # leaving automatic HTTPS on keeps Caddy answering ACME HTTP-01 challenges here.
                        "automatic_https": {"disable_redirects": True},
                    },
                    "hostpanel-https": {
                        "@id": "hostpanel-https",
                        "listen": _listen(settings, settings.https_port),
                        "routes": routes,
                        "tls_connection_policies": [{}],
                        "protocols": ["h1", "h2"],  # no HTTP/3: no UDP listener to collide with
                        "automatic_https": {"disable_redirects": True},
                    },
                },
            },
            "tls": {
                "automation": {
                    "policies": [{"@id": "hostpanel-tls", "issuers": [_issuer(settings)], "on_demand": True}],
                    # Caddy asks the panel before it gets a certificate for a name: yes only for ours.
                    "on_demand": {"ask": settings.ask_url},
                }
            },
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }


def internal_root_cert(storage_dir: Path) -> Path:
    """Where Caddy's internal CA keeps its root certificate (what a browser or client trusts)."""
    return storage_dir / "pki" / "authorities" / "local" / "root.crt"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class CaddyAdmin:
    """A client of Caddy's admin API listening on a unix socket."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; the decoded JSON answer (None when empty); CaddyError on failure."""
        conn = _UnixConnection(self.socket_path, self.timeout)
        payload = None if body is None else json.dumps(body).encode()
        # Caddy's admin API on a unix socket accepts only an empty Host (its allowed origin "").
        headers = {"Host": ""} | ({"Content-Type": "application/json"} if payload is not None else {})
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            raise CaddyError(f"caddy admin at {self.socket_path}: {exc}") from exc
        finally:
            conn.close()
        if response.status >= 400:
            answer = data.decode(errors="replace")
            raise CaddyError(f"caddy admin {method} {path}: {response.status} {answer}")
        return json.loads(data) if data.strip() else None

    def config(self) -> Any:
        return self.request("GET", "/config/")

    def load(self, config: dict[str, Any]) -> None:
        self.request("POST", "/load", config)

    def ensure(self, config: dict[str, Any]) -> bool:
        """Load ``config`` unless Caddy runs exactly it already (a reload would cut websockets)."""
        if self.config() == config:
            return False
        self.load(config)
        return True
