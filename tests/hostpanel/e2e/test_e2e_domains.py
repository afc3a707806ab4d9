"""A custom domain end to end: real Caddy, a real host agent, a busybox httpd replica, a real DNS server.

The tenant adds ``www.shop.test``; DNS (dnslib, on 127.0.0.1) points it at the proxy; the HTTP
token is fetched through Caddy from the panel (daphne); once verified the name routes to the
app, gets a certificate from Caddy's internal CA (verified by the client against its root),
plain HTTP redirects to HTTPS, and removing the domain removes its route at once.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import Replica
from hostpanel.domains import services as domains
from hostpanel.domains.models import Domain
from hostpanel.hosts.models import Host
from hostpanel.tenants import services as tenants
from tests.hostpanel.domains.helpers import dns_server
from tests.hostpanel.factories import UserFactory
from tests.stack import (
    Agent,
    Caddy,
    free_port,
    panel_env,
    shared_database_url,
    start_daphne,
    stop_process,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

NAME = "www.shop.test"


def get(port: int, host: str, path: str = "/") -> tuple[int, str, str]:
    """(status, Location, body) of GET ``path`` with ``Host: host`` at 127.0.0.1:``port``; 0 if none."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.getheader("Location") or "", r.read().decode(errors="replace")
    except OSError as exc:
        return 0, "", str(exc)
    finally:
        conn.close()


def tls_answers(port: int, hostname: str, root: str) -> bool:
    """Whether a TLS handshake with SNI ``hostname`` verifies against ``root``."""
    try:
        tls_get(port, hostname, root)
    except ssl.SSLError:
        return False
    return True


def tls_get(port: int, hostname: str, root: str) -> str:
    """The body of GET / over TLS with SNI ``hostname``, verified against ``root``."""
    context = ssl.create_default_context(cafile=root)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    return body


def test_a_custom_domain_proven_by_the_http_token_is_served_over_https(
    agents: Callable[..., Agent], caddy: Caddy, tmp_path: Any, settings: Any, celery_to: str
) -> None:

    panel_port = free_port()
    env = panel_env(shared_database_url(), celery_to, tmp_path / "var", settings.HOSTPANEL_SECRET_KEYS)
    env["HOSTPANEL_SECRET_KEY"] = settings.SECRET_KEY  # the token's proof is signed with it
    panel = start_daphne(["-b", "127.0.0.1", "-p", str(panel_port)], env, tmp_path / "daphne.log")
    with dns_server() as (dns, nameserver):
        settings.HOSTPANEL_DOMAINS_NAMESERVERS = [nameserver]
        settings.HOSTPANEL_EDGE_ADDRESSES = ["127.0.0.1"]  # the proxy listens there in tests
        settings.HOSTPANEL_PROXY_HTTP_PORT = caddy.http_port
        settings.HOSTPANEL_PROXY_HTTPS_PORT = caddy.https_port
        try:
            h1 = agents("dom-h1", caddy.agent_env(panel_url=f"http://127.0.0.1:{panel_port}"))
            wait_for(lambda: Host.objects.filter(name="dom-h1", state="up").exists(), 30, "the agent")
            admin = Actor(UserFactory(username="dom-admin", is_staff=True, is_superuser=True))
            tenant = tenants.create_tenant(admin, "shop")
            dev = Actor(UserFactory(username="shop-dev"))
            tenants.add_member(admin, tenant, "shop-dev", "developer")
            site = 'mkdir -p /www && echo "hello-shop" > /www/index.html && exec httpd -f -p 8080 -h /www'
            command = ["sh", "-c", site]
            spec = deployments.AppSpec(image="busybox:latest", command=command, http_port=8080)
            app = deployments.create_app(admin, tenant, "web", spec)
            wait_for(
                lambda: Replica.objects.filter(app=app, state="running").exists(),
                60,
                f"the replica\n{h1.log_tail()}",
            )
            wait_for(lambda: get(caddy.http_port, "web-shop.localhost")[0] == 200, 30, "the auto hostname")

            domain = domains.add_domain(dev, app, "WWW.Shop.Test.")
            assert domain.name == NAME
            # Not verified: not routed, and the proxy gets no certificate for it.
            assert "hello-shop" not in get(caddy.http_port, NAME)[2]
            root = str(caddy.root_cert)
            with pytest.raises(ssl.SSLError):
                tls_get(caddy.https_port, NAME, root)

            dns.records[(NAME, "A")] = ["127.0.0.1"]
            verified = domains.verify_domain(dev, domain, "http")
            assert verified.verified_method == "http"
            wait_for(
                lambda: get(caddy.http_port, NAME)[2].startswith("hello-shop"),
                30,
                f"the route\n{h1.log_tail()}",
            )

            # The panel answers Caddy's ask from a set of served names up to 2 s old (it was asked
            # for NAME above, before the proof): a certificate follows within that.
            wait_for(lambda: tls_answers(caddy.https_port, NAME, root), 10, "a certificate for the domain")
            assert tls_get(caddy.https_port, NAME, root).startswith("hello-shop")
            domains.record_certificate(verified)
            verified.refresh_from_db()
            assert verified.cert_state == "issued", verified.cert_error
            assert "Caddy Local Authority" in verified.cert_issuer and verified.cert_expires_at is not None

            status, location, _ = get(caddy.http_port, NAME, "/index.html")
            assert (status, location) == (308, f"https://{NAME}:{caddy.https_port}/index.html")

            domains.remove_domain(dev, Domain.objects.get(name=NAME))
            wait_for(lambda: "hello-shop" not in get(caddy.http_port, NAME)[2], 30, "the route to go")
            assert get(caddy.http_port, "web-shop.localhost")[2].startswith(
                "hello-shop"
            )  # the app still serves
        finally:
            stop_process(panel)
