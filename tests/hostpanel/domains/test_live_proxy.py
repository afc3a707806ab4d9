"""Domains through a real Caddy and a real DNS server: the HTTP token proof, certificates, HTTPS redirect.

Caddy runs the edge's panel route and the HTTPS redirect (hostpanel/domains/edge_routes.py) with
on-demand TLS from its internal CA; the panel answers through pytest-django's live server.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hostpanel.domains import certs
from hostpanel.domains.edge_routes import https_redirect_route
from hostpanel.domains.models import Domain
from hostpanel.edge.caddy import EdgeSettings, panel_route
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.domains.helpers import Caddy, TableResolver, dns_server
from tests.stack import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NAME = "www.example.test"


@pytest.fixture
def dns(settings: Any) -> Iterator[TableResolver]:
    with dns_server() as (resolver, address):
        settings.HOSTPANEL_DOMAINS_NAMESERVERS = [address]
        settings.HOSTPANEL_DOMAINS_CHECK_TIMEOUT = 5.0
        yield resolver


@pytest.fixture
def caddy(tmp_path: Path, live_server: Any, settings: Any, host: Host) -> Iterator[Caddy]:
    """Caddy with the domain routes in front of a stand-in app; the panel's host h1 is at 127.0.0.1."""
    proxy = Caddy(tmp_path)
    app_route = {
        "handle": [{"handler": "static_response", "status_code": 200, "body": "app {http.request.host}"}]
    }
    proxy.start(
        [
            https_redirect_route(str(proxy.certificates_dir()), proxy.https_port),
            panel_route(EdgeSettings(tmp_path / "admin.sock", proxy.storage, 53, panel_url=live_server.url)),
            app_route,
        ],
        tls_policy={"issuers": [{"module": "internal"}], "on_demand": True},
    )
    Host.objects.filter(pk=host.pk).update(address="127.0.0.1")
    settings.HOSTPANEL_PROXY_HTTP_PORT = proxy.http_port
    settings.HOSTPANEL_PROXY_HTTPS_PORT = proxy.https_port
    yield proxy
    proxy.stop()


def get(port: int, host: str, path: str = "/") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.getheader("Location") or "", r.read().decode()
    finally:
        conn.close()


def url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/apps/web/domains/{suffix}"


def test_http_token_through_the_proxy_then_a_certificate_and_the_https_redirect(
    api: Any, member: Any, tenant: Tenant, make_app: Any, caddy: Caddy, dns: TableResolver
) -> None:
    make_app(tenant, "web", http_port=80)
    dev = api(member(tenant, Role.DEVELOPER))
    assert dev.post(url(tenant), {"name": NAME.upper()}, format="json").status_code == 201
    # not pointed at us yet: a clear 422, and nothing changes
    dns.records[(NAME, "A")] = ["192.0.2.7"]
    r = dev.post(url(tenant, f"{NAME}/verify/"), {"method": "http"}, format="json")
    assert r.status_code == 422 and "192.0.2.7" in r.json()["error"]["message"]
    assert "127.0.0.1" in r.json()["error"]["message"]
    assert not Domain.objects.get().verified

    dns.records[(NAME, "A")] = ["127.0.0.1"]
    r = dev.post(url(tenant, f"{NAME}/verify/"), {"method": "http"}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["verified_method"] == "http" and r.json()["certificate"]["state"] == "pending"

    # before any certificate: plain HTTP reaches the app
    assert get(caddy.http_port, NAME) == (200, "", f"app {NAME}")

    r = dev.post(url(tenant, f"{NAME}/certificate/"), format="json")
    assert r.status_code == 200, r.json()
    cert = r.json()["certificate"]
    assert cert["state"] == "issued", cert
    assert "Caddy Local Authority" in cert["issuer"]
    assert datetime.fromisoformat(cert["expires_at"]) > datetime.now(UTC)

    # HTTPS verified against Caddy's root
    root = caddy.storage / "pki" / "authorities" / "local" / "root.crt"
    context = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", caddy.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        assert b"secure " + NAME.encode() in tls.recv(4096)

    # now plain HTTP redirects; the proof path and names without a certificate do not
    status, location, _ = get(caddy.http_port, NAME, "/shop?q=1")
    assert (status, location) == (308, f"https://{NAME}:{caddy.https_port}/shop?q=1")
    assert get(caddy.http_port, "other.example.test")[0] == 200
    assert get(caddy.http_port, NAME, "/.well-known/hostpanel/" + "0" * 64)[0] == 404
    for hostile in ("..", "../../pki/authorities/local/root", "%2e%2e"):
        assert get(caddy.http_port, hostile)[0] in (200, 400)


class Echo(BaseHTTPRequestHandler):
    """A server in front of the domain that echoes the token back (it cannot know the panel's proof)."""

    def do_GET(self) -> None:
        body = self.path.rsplit("/", 1)[-1].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_echoing_the_token_does_not_verify(
    api: Any, member: Any, tenant: Tenant, make_app: Any, caddy: Caddy, dns: TableResolver, settings: Any
) -> None:
    make_app(tenant, "web", http_port=80)
    dev = api(member(tenant, Role.DEVELOPER))
    dev.post(url(tenant), {"name": NAME}, format="json")
    dns.records[(NAME, "A")] = ["127.0.0.1"]
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    try:
        settings.HOSTPANEL_PROXY_HTTP_PORT = echo.server_address[1]
        r = dev.post(url(tenant, f"{NAME}/verify/"), {"method": "http"}, format="json")
    finally:
        echo.shutdown()
        echo.server_close()
    assert r.status_code == 422 and "did not answer the token" in r.json()["error"]["message"]
    assert not Domain.objects.get().verified


def test_certificates_are_read_from_what_the_proxy_presents(caddy: Caddy) -> None:
    seen = certs.presented("127.0.0.1", caddy.https_port, "shop.example.test", timeout=10)
    assert seen.covers("shop.example.test") and not seen.covers("www.example.test")
    assert not seen.expired()
    with pytest.raises(certs.NoCertificate):
        certs.presented("127.0.0.1", caddy.http_port, "shop.example.test", timeout=5)
    with pytest.raises(certs.NoProxy):
        certs.presented("127.0.0.1", free_port(), "shop.example.test", timeout=5)
