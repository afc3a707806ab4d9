"""The routing table's wire format and the agent's DNS answers (real UDP/TCP through dnspython)."""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from hostpanel.edge.dns import EdgeDNS, RoutesResolver
from hostpanel.edge.routes import BadRoutes, Routes, with_ip_addresses

TABLE = {
    "generation": 3,
    "hosts": {"h1": "10.0.0.1", "h2": "fd00::2"},
    "routes": {"web-demo.localhost": [["h1", 30001], ["h2", 30002]], "*.wild.example": [["h1", 30003]]},
}


@pytest.fixture
def server() -> Iterator[EdgeDNS]:
    edge = EdgeDNS(RoutesResolver(Routes.from_json(TABLE)))
    edge.start()
    yield edge
    edge.stop()


def ask(server: EdgeDNS, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=server.port, timeout=3)


@pytest.mark.parametrize("tcp", [False, True])
def test_srv_names_the_replicas_and_a_names_the_hosts(server: EdgeDNS, tcp: bool) -> None:
    answer = ask(server, "WEB-Demo.localhost.routes.hostpanel.", "SRV", tcp)
    records = sorted((r.port, str(r.target)) for rrset in answer.answer for r in rrset)
    assert records == [(30001, "h1.hosts.hostpanel."), (30002, "h2.hosts.hostpanel.")]
    (a,) = ask(server, "h1.hosts.hostpanel.", "A", tcp).answer
    assert [r.address for r in a] == ["10.0.0.1"]
    (aaaa,) = ask(server, "h2.hosts.hostpanel.", "AAAA", tcp).answer
    assert [r.address for r in aaaa] == ["fd00::2"]
    assert ask(server, "h2.hosts.hostpanel.", "A", tcp).answer == []  # no IPv4 for an IPv6 host


def test_a_wildcard_covers_exactly_one_label(server: EdgeDNS) -> None:
    assert ask(server, "shop.wild.example.routes.hostpanel.", "SRV").answer
    deeper = ask(server, "a.shop.wild.example.routes.hostpanel.", "SRV")
    assert deeper.rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "wild.example.routes.hostpanel.", "SRV").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    "name",
    [
        "nobody.localhost.routes.hostpanel.",
        "h1.hosts.hostpanel.routes.hostpanel.",
        "web-demo.localhost.routes.hostpanel.routes.hostpanel.",
        "h9.hosts.hostpanel.",
        "_http._tcp.web-demo.localhost.routes.hostpanel.",
    ],
)
def test_unknown_names_are_nxdomain(server: EdgeDNS, name: str) -> None:
    answer = ask(server, name, "SRV" if "routes" in name else "A")
    assert answer.rcode() == dns.rcode.NXDOMAIN and answer.answer == []


def test_names_outside_our_zones_are_refused_not_resolved(server: EdgeDNS) -> None:
    answer = ask(server, "example.com.", "A")
    assert answer.rcode() == dns.rcode.REFUSED and answer.answer == []


def test_an_older_table_never_replaces_a_newer_one(server: EdgeDNS) -> None:
    resolver = server.resolver
    assert not resolver.swap(Routes(generation=2))
    assert ask(server, "web-demo.localhost.routes.hostpanel.", "SRV").answer
    assert resolver.swap(Routes(generation=4))  # a newer, empty table: the name goes at once
    assert ask(server, "web-demo.localhost.routes.hostpanel.", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_the_server_listens_on_loopback_only(server: EdgeDNS) -> None:
    assert server.address == "127.0.0.1"
    assert all(s.server.server_address[0] == "127.0.0.1" for s in server._servers)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ([], "JSON object"),
        ({"generation": -1}, "generation"),
        ({"generation": True}, "generation"),
        ({"generation": 1, "hosts": {"10.0.0.1": "10.0.0.1"}}, "hosts"),
        ({"generation": 1, "hosts": {}, "routes": {"Evil.Example": []}}, "not a lowercase DNS name"),
        ({"generation": 1, "hosts": {}, "routes": {"a b": []}}, "not a lowercase DNS name"),
        ({"generation": 1, "hosts": {}, "routes": {"a.example": [["h1", 80]]}}, "bad target"),
        ({"generation": 1, "hosts": {"h1": "x"}, "routes": {"a.example": [["h1", 0]]}}, "out of range"),
        ({"generation": 1, "hosts": {"h1": "x"}, "routes": {"a.example": [["h1", "80"]]}}, "bad target"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(table: object, says: str) -> None:
    with pytest.raises(BadRoutes, match=says):
        Routes.from_json(table)


def test_round_trip_and_digest_ignores_the_generation() -> None:
    routes = Routes.from_json(TABLE)
    assert Routes.from_json(routes.to_json()) == routes
    assert Routes.from_json(TABLE | {"generation": 9}).digest() == routes.digest()
    assert Routes.from_json(TABLE | {"routes": {}}).digest() != routes.digest()


def test_host_names_become_addresses_and_unresolvable_hosts_drop_out() -> None:
    table = {
        "generation": 1,
        "hosts": {"h1": "node1.example", "h2": "gone.example", "h3": "10.0.0.3"},
        "routes": {"a.example": [["h1", 1], ["h2", 2], ["h3", 3]]},
    }

    def lookup(name: str) -> list[str]:
        if name == "node1.example":
            return ["192.0.2.1"]
        raise OSError("no such host")

    routes = with_ip_addresses(Routes.from_json(table), lookup)
    assert dict(routes.hosts) == {"h1": "192.0.2.1", "h3": "10.0.0.3"}
    assert routes.routes["a.example"] == (("h1", 1), ("h3", 3))


def test_two_servers_never_share_a_port() -> None:
    first = EdgeDNS(RoutesResolver())
    try:
        with pytest.raises(OSError):
            EdgeDNS(RoutesResolver(), port=first.port)
    finally:
        first.stop()


def test_timeouts_are_the_clients_problem_not_a_crash(server: EdgeDNS) -> None:
    # Garbage on the UDP port: the server keeps answering afterwards.
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00garbage", ("127.0.0.1", server.port))
    try:
        assert ask(server, "web-demo.localhost.routes.hostpanel.", "SRV").answer
    except dns.exception.Timeout:  # pragma: no cover - would mean the server died
        pytest.fail("the DNS server stopped answering after a malformed packet")
