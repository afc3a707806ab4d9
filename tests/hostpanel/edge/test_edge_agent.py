"""The agent's edge: the table on disk, the DNS port kept, and Caddy's config (a real Caddy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from hostpanel.agent.edge import EdgeAgent, caddy_fields
from hostpanel.edge.caddy import CaddyAdmin, CaddyError, EdgeSettings, base_config
from tests.stack import Caddy, caddy_server

TABLE = {"generation": 4, "hosts": {"h1": "127.0.0.1"}, "routes": {"site-acme.localhost": [["h1", 30001]]}}


def srv(agent: EdgeAgent, name: str) -> dns.message.Message:
    query = dns.message.make_query(f"{name}.routes.hostpanel.", "SRV")
    return dns.query.udp(query, "127.0.0.1", port=agent.dns.port, timeout=3)


@pytest.fixture
def started() -> Iterator[list[EdgeAgent]]:
    agents: list[EdgeAgent] = []
    yield agents
    for agent in agents:
        agent.stop()


def test_a_restarted_agent_answers_from_the_last_table_at_once_on_the_same_port(
    tmp_path: Path, started: list[EdgeAgent]
) -> None:
    first = EdgeAgent(tmp_path / "edge", caddy=None)
    first.start()
    started.append(first)
    assert srv(first, "site-acme.localhost").rcode() == dns.rcode.NXDOMAIN
    assert first.apply(TABLE)
    assert srv(first, "site-acme.localhost").answer
    assert not first.apply(TABLE | {"generation": 3, "routes": {}})  # older: ignored, not persisted
    assert (tmp_path / "edge" / "routes.json").stat().st_mode & 0o777 == 0o600
    port = first.dns.port
    first.stop()
    started.clear()

    again = EdgeAgent(tmp_path / "edge", caddy=None)
    again.start()
    started.append(again)
    assert again.dns.port == port  # Caddy's config names this port: it stays the same
    assert again.resolver.routes.generation == 4
    assert srv(again, "site-acme.localhost").answer


def test_a_damaged_table_file_is_ignored(tmp_path: Path, started: list[EdgeAgent]) -> None:
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "routes.json").write_text('{"generation": 1, "routes": {"A B": []}}')
    agent = EdgeAgent(tmp_path / "edge", caddy=None)
    started.append(agent)
    assert agent.resolver.routes.generation == 0


def test_settings_say_what_is_wrong(settings: Any) -> None:
    settings.HOSTPANEL_TLS = "letsencrypt-staging"
    with pytest.raises(ValueError, match="HOSTPANEL_TLS: 'letsencrypt-staging' is not a mode; use one of"):
        caddy_fields("/run/x.sock")
    settings.HOSTPANEL_TLS = "internal"
    settings.HOSTPANEL_PROXY_HTTPS_PORT = settings.HOSTPANEL_PROXY_HTTP_PORT
    with pytest.raises(ValueError, match="must differ"):
        caddy_fields("/run/x.sock")
    assert caddy_fields("") is None  # no Caddy on this host


def test_the_agent_refuses_a_tls_mode_it_cannot_do_before_starting_anything(settings: Any) -> None:
    from django.core.management import CommandError, call_command

    settings.HOSTPANEL_TLS = "self-signed"
    with pytest.raises(CommandError, match="edge proxy: HOSTPANEL_TLS"):
        call_command("hostagent", "--name", "nowhere", "--caddy-admin", "/run/nowhere.sock")


def edge_settings(tmp_path: Path, **changes: Any) -> EdgeSettings:
    values: dict[str, Any] = {
        "admin_socket": tmp_path / "admin.sock",
        "storage_dir": tmp_path / "data",
        "dns_port": 5300,
    }
    return EdgeSettings(**(values | changes))


def test_the_config_routes_by_srv_through_our_resolver_and_asks_before_certificates(tmp_path: Path) -> None:
    config = base_config(edge_settings(tmp_path, ask_url="http://panel:8000/edge/ask"))
    servers = config["apps"]["http"]["servers"]
    assert config["admin"]["listen"] == f"unix/{tmp_path / 'admin.sock'}"
    (apps,) = [r for r in servers["hostpanel-http"]["routes"] if r.get("@id") == "hostpanel-apps"]
    proxy = apps["handle"][0]
    assert proxy["dynamic_upstreams"]["name"] == "{http.request.host}.routes.hostpanel."
    assert proxy["dynamic_upstreams"]["resolver"] == {"addresses": ["127.0.0.1:5300"]}
    assert proxy["transport"]["resolver"] == {"addresses": ["127.0.0.1:5300"]}
    # plain HTTP has one route more: the redirect to HTTPS once a name has a certificate (domains)
    plain = [r for r in servers["hostpanel-http"]["routes"] if r.get("@id") != "hostpanel-https-redirect"]
    assert servers["hostpanel-https"]["routes"] == plain
    tls = config["apps"]["tls"]["automation"]
    assert tls["on_demand"] == {"ask": "http://panel:8000/edge/ask"}
    assert tls["policies"][0]["issuers"] == [{"module": "internal"}]
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    (panel,) = [r for r in servers["hostpanel-http"]["routes"] if r.get("@id") == "hostpanel-panel"]
    assert panel["match"] == [{"path": ["/.well-known/hostpanel/*"]}]
    assert panel["handle"][0]["headers"]["request"]["set"]["X-Forwarded-Host"] == ["{http.request.host}"]
    acme = base_config(edge_settings(tmp_path, tls="acme", acme_email="ops@example.com"))
    assert acme["apps"]["tls"]["automation"]["policies"][0]["issuers"] == [
        {"module": "acme", "email": "ops@example.com"}
    ]


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[Caddy]:
    with caddy_server(tmp_path / "caddy") as server:
        yield server


@pytest.mark.slow
def test_caddy_gets_the_config_once_and_is_not_reloaded_when_nothing_changed(
    caddy: Caddy, tmp_path: Path
) -> None:
    settings = edge_settings(
        tmp_path,
        admin_socket=caddy.admin_socket,
        storage_dir=caddy.data_dir,
        http_port=caddy.http_port,
        https_port=caddy.https_port,
        bind="127.0.0.1",
    )
    admin = CaddyAdmin(caddy.admin_socket)
    assert admin.ensure(base_config(settings))
    assert not admin.ensure(base_config(settings))  # a reload would cut every proxied websocket
    assert admin.request("GET", "/id/hostpanel-apps")["@id"] == "hostpanel-apps"
    assert admin.request("GET", "/id/hostpanel-tls")["on_demand"] is True
    with pytest.raises(CaddyError, match=r"400|404|unknown object ID"):
        admin.request("GET", "/id/nothing-here")
    assert json.dumps(admin.config(), sort_keys=True) == json.dumps(base_config(settings), sort_keys=True)


def test_the_admin_socket_is_reachable_only_by_its_owner(caddy: Caddy) -> None:
    assert caddy.admin_socket.parent.stat().st_mode & 0o777 == 0o700


def test_a_missing_caddy_is_reported_once_not_every_beat(
    tmp_path: Path, started: list[EdgeAgent], caplog: pytest.LogCaptureFixture
) -> None:
    fields = {"admin_socket": tmp_path / "none.sock", "storage_dir": tmp_path / "data"}
    agent = EdgeAgent(tmp_path / "edge", caddy=fields)
    started.append(agent)
    with caplog.at_level("WARNING", logger="hostpanel.agent.edge"):
        assert not agent.ensure_caddy()
        assert not agent.ensure_caddy()
    assert [r.message.count("is caddy running?") for r in caplog.records] == [1]
