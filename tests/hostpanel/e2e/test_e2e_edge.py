"""The edge proxy end to end: a real Caddy, real host agents, busybox httpd replicas.

Requests go to Caddy's port with a ``Host`` header (what a browser sends for
``http://<app>-<tenant>.localhost:<port>/``); the agent's DNS server tells Caddy where the
replicas are. Nothing here touches an address outside the machine.
"""

from __future__ import annotations

import http.client
import signal
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.edge.caddy import CaddyAdmin
from hostpanel.errors import Conflict
from hostpanel.hosts.models import Host
from hostpanel.tenants import services as tenants
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


def site(text: str) -> list[str]:
    """busybox httpd on 8080 serving ``<text> <container hostname>`` at /."""
    return [
        "sh",
        "-c",
        f'mkdir -p /www && echo "{text} $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www',
    ]


def get(port: int, host: str, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    """GET ``path`` from 127.0.0.1:``port`` with ``Host: host``; (status, body), (0, error) if none."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
    finally:
        conn.close()


def admin_actor() -> Actor:
    return Actor(UserFactory(username="edge-admin", is_staff=True, is_superuser=True))


def web_app(admin: Actor, slug: str, app: str, text: str, replicas: int = 1) -> App:
    tenant = tenants.create_tenant(admin, slug)
    spec = deployments.AppSpec(image="busybox:latest", command=site(text), http_port=8080, replicas=replicas)
    return deployments.create_app(admin, tenant, app, spec)


def serving(app: App, count: int, agent: Agent) -> None:
    wait_for(
        lambda: Replica.objects.filter(app=app, state="running").count() == count,
        60,
        f"{count} running replica(s) of {app}\n{agent.log_tail()}",
    )


def test_hostname_reaches_every_replica_and_nothing_else(agents: Callable[..., Agent], caddy: Caddy) -> None:
    h1 = agents("edge-h1", caddy.agent_env())
    wait_for(lambda: Host.objects.filter(name="edge-h1", state="up").exists(), 30, "the agent to register")
    admin = admin_actor()
    app = web_app(admin, "webco", "site", "hello-webco", replicas=2)
    other = web_app(admin, "rival", "site", "hello-rival")
    serving(app, 2, h1)
    serving(other, 1, h1)

    # The auto hostname, as a browser sends it for http://site-webco.localhost:<port>/ (any case).
    seen: set[str] = set()

    def both_replicas() -> bool:
        status, body = get(caddy.http_port, f"Site-WebCo.localhost:{caddy.http_port}")
        if status == 200:
            assert body.startswith("hello-webco "), body  # never another tenant's page
            seen.add(body)
        return len(seen) == 2

    wait_for(both_replicas, 40, f"both replicas through caddy\n{h1.log_tail()}\n{caddy.log_tail()}")
    status, body = get(caddy.http_port, "site-rival.localhost")
    assert (status, body.split()[0]) == (200, "hello-rival")

    # Hostile or unknown Host headers get nothing of anyone's.
    hostile = [
        "nobody.localhost",
        "webco.localhost",
        "site-webco.localhost.evil.example",
        "site-webco.localhost.",  # not the name we serve (and not a valid SRV name with the suffix)
        "x.site-webco.localhost",
        "h1.hosts.hostpanel",
        f"h{h1_pk()}.hosts.hostpanel",
        "site-webco.localhost.routes.hostpanel",
        "_http._tcp.site-webco.localhost",
        "127.0.0.1",
        "[::1]",
        "a" * 300,
        "site-webco.localhost\\x00",
    ]
    for host in hostile:
        status, body = get(caddy.http_port, host)
        assert status >= 400 or status == 0, (host, status, body)
        assert "hello-" not in body, (host, body)

    # Another tenant's app never appears under this hostname, even by a colliding name:
    # tenant "b-c" app "a" and tenant "c" app "a-b" both make a-b-c.localhost; the second is refused.
    first = web_app(admin, "c", "a-b", "first-owner")
    serving(first, 1, h1)
    with pytest.raises(Conflict, match="choose another app name"):
        web_app(admin, "b-c", "a", "squatter")
    assert wait_for(lambda: get(caddy.http_port, "a-b-c.localhost")[0] == 200, 20, "the first owner's page")
    for _ in range(20):
        status, body = get(caddy.http_port, "a-b-c.localhost")
        assert status == 200 and body.startswith("first-owner "), body

    # Deleting the app removes its route: nothing answers for its name any more.
    deployments.delete_app(admin, app)
    wait_for(lambda: get(caddy.http_port, "site-webco.localhost")[0] >= 500, 30, "the route to go")
    assert "hello-webco" not in get(caddy.http_port, "site-webco.localhost")[1]


def h1_pk() -> int:
    return int(Host.objects.get(name="edge-h1").pk)


def test_caddy_on_one_host_reaches_a_replica_on_another(agents: Callable[..., Agent], caddy: Caddy) -> None:
    h2 = agents("edge-far")  # no Caddy on this host: it only runs the replica
    wait_for(lambda: Host.objects.filter(name="edge-far", state="up").exists(), 30, "the far agent")
    admin = admin_actor()
    app = web_app(admin, "multi", "site", "hello-multi")
    serving(app, 1, h2)
    h1 = agents("edge-near", caddy.agent_env())  # starts after: catches up with the table at once
    wait_for(lambda: Host.objects.filter(name="edge-near", state="up").exists(), 30, "the near agent")
    replica = Replica.objects.get(app=app)
    assert replica.host is not None and replica.host.name == "edge-far"
    assert h1.engine.list(all=True) == []  # nothing of the app runs where Caddy is
    ok = wait_for(
        lambda: get(caddy.http_port, "site-multi.localhost")[1].startswith("hello-multi "),
        40,
        f"the far replica through the near caddy\n{h1.log_tail()}",
    )
    assert ok

    # Caddy dies and comes back empty: the agent loads its config again by itself.
    stop_process(caddy.proc, sig=signal.SIGKILL)
    assert get(caddy.http_port, "site-multi.localhost")[0] == 0  # nothing listens
    caddy.start()
    wait_for(
        lambda: get(caddy.http_port, "site-multi.localhost")[1].startswith("hello-multi "),
        30,
        f"the route after caddy restarted\n{h1.log_tail()}",
    )

    # The near agent restarts: its DNS answers from the table it kept, on the same port, so
    # Caddy's config stays as it was (no reload: proxied websockets would be cut).
    config = CaddyAdmin(caddy.admin_socket).config()
    h1.stop()
    h1.proc = None
    h1.start()
    answers: list[tuple[int, str]] = []

    def routed_again() -> bool:
        answers.append(get(caddy.http_port, "site-multi.localhost"))
        return answers[-1][1].startswith("hello-multi ")

    wait_for(routed_again, 60, "the route after the agent restarted")
    assert CaddyAdmin(caddy.admin_socket).config() == config


def tls_get(port: int, hostname: str, root: str) -> tuple[str, str]:
    """GET / over TLS with SNI ``hostname``, verified against ``root``; (status line, body)."""
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
    return head.splitlines()[0], body


def test_https_with_the_internal_ca_only_for_names_we_serve(
    agents: Callable[..., Agent], caddy: Caddy, tmp_path: Any, settings: Any, celery_to: str
) -> None:

    panel_port = free_port()
    env = panel_env(shared_database_url(), celery_to, tmp_path / "var", settings.HOSTPANEL_SECRET_KEYS)
    panel = start_daphne(["-b", "127.0.0.1", "-p", str(panel_port)], env, tmp_path / "daphne.log")
    try:
        h1 = agents("edge-tls", caddy.agent_env(panel_url=f"http://127.0.0.1:{panel_port}"))
        wait_for(lambda: Host.objects.filter(name="edge-tls", state="up").exists(), 30, "the agent")
        app = web_app(admin_actor(), "secure", "site", "hello-secure")
        serving(app, 1, h1)
        wait_for(lambda: get(caddy.http_port, "site-secure.localhost")[0] == 200, 30, "the http route")
        wait_for(caddy.root_cert.exists, 30, "caddy's internal CA root")

        status, body = tls_get(caddy.https_port, "site-secure.localhost", str(caddy.root_cert))
        assert status.startswith("HTTP/1.1 200"), status
        assert body.startswith("hello-secure ")
        # A name we do not serve: the panel's ask endpoint says no, so no certificate at all.
        with pytest.raises(ssl.SSLError):
            tls_get(caddy.https_port, "evil.localhost", str(caddy.root_cert))
        # Ownership tokens: /.well-known/hostpanel/ on any name is the panel's (Django's 404 here:
        # no such token), never the app's page and never Caddy's 503.
        status, body = get(caddy.http_port, "site-secure.localhost", "/.well-known/hostpanel/no-such-token")
        assert status == 404 and "hello-secure" not in body
    finally:
        stop_process(panel)


STREAM_CGI = "\n".join(
    [
        "#!/bin/sh",
        'printf "Content-Type: text/plain\\r\\n\\r\\n"',
        "i=1; while [ $i -le 40 ]; do echo tick $i; i=$((i + 1)); sleep 1; done",
        "echo done",
    ]
)


def test_a_streamed_response_survives_route_changes(agents: Callable[..., Agent], caddy: Caddy) -> None:
    """Replicas come and go while a response streams through Caddy: only DNS answers change."""
    h1 = agents("edge-stream", caddy.agent_env())
    wait_for(lambda: Host.objects.filter(name="edge-stream", state="up").exists(), 30, "the agent")
    admin = admin_actor()
    tenant = tenants.create_tenant(admin, "streamco")
    setup = (
        "mkdir -p /www/cgi-bin && printf '%s' \"$CGI\" > /www/cgi-bin/ticks && chmod +x /www/cgi-bin/ticks"
        " && exec httpd -f -p 8080 -h /www"
    )
    spec = deployments.AppSpec(
        image="busybox:latest", command=["sh", "-c", setup], env={"CGI": STREAM_CGI}, http_port=8080
    )
    app = deployments.create_app(admin, tenant, "live", spec)
    serving(app, 1, h1)
    config = CaddyAdmin(caddy.admin_socket).config()
    wait_for(
        lambda: get(caddy.http_port, "live-streamco.localhost", "/cgi-bin/ticks")[0] == 200, 40, "the route"
    )

    conn = http.client.HTTPConnection("127.0.0.1", caddy.http_port, timeout=20)
    conn.putrequest("GET", "/cgi-bin/ticks", skip_host=True)
    conn.putheader("Host", "live-streamco.localhost")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline() == b"tick 1\n"  # streamed: the first line before the script ends
    # Meanwhile: another replica joins and a second app appears (new routing tables).
    deployments.scale(admin, app, 2)
    other = web_app(admin, "otherco", "site", "hello-other")
    serving(app, 2, h1)
    serving(other, 1, h1)
    wait_for(lambda: get(caddy.http_port, "site-otherco.localhost")[0] == 200, 30, "the new app's route")
    assert h1.proc is not None and h1.proc.poll() is None
    line = response.readline().decode()
    assert line.startswith("tick ") and int(line.split()[1]) < 40, line  # still streaming after all that
    rest = response.read().decode()
    conn.close()
    seen = [int(line.split()[1]), *(int(n) for n in rest.split()[1:-1:2])]
    assert seen == list(range(seen[0], 41)) and rest.split()[-1] == "done"
    assert CaddyAdmin(caddy.admin_socket).config() == config  # Caddy was never reconfigured
