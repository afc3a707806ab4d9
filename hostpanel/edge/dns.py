"""The host agent's tiny DNS server: Caddy asks it where a hostname's replicas are.

Answers only from the routing table (:class:`hostpanel.edge.routes.Routes`), only on
127.0.0.1, over UDP and TCP (dnslib):

- SRV ``<hostname>.routes.hostpanel.``: one record per serving replica (port = its
  published host port, target = ``<host key>.hosts.hostpanel.``);
- A / AAAA ``<host key>.hosts.hostpanel.``: that host's address (Go refuses SRV targets
  that are bare IP addresses, hence the names);
- anything else: NXDOMAIN, so Caddy has no upstream and answers 502 itself.

The table is swapped atomically; an older generation never replaces a newer one.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from hostpanel.edge.routes import Routes

log = logging.getLogger(__name__)

ROUTES_ZONE = "routes.hostpanel."
HOSTS_ZONE = "hosts.hostpanel."
TTL = 1  # Caddy refreshes every second; nobody should keep an answer longer


def srv_name(hostname: str) -> str:
    """The SRV name Caddy asks for ``hostname`` (its ``{http.request.host}`` + the routes zone)."""
    return f"{hostname}.{ROUTES_ZONE}"


def host_target(key: str) -> str:
    return f"{key}.{HOSTS_ZONE}"


class RoutesResolver(BaseResolver):  # type: ignore[misc]
    """Answers SRV/A/AAAA questions from the current routing table."""

    def __init__(self, routes: Routes | None = None) -> None:
        self._routes = routes or Routes()
        self._lock = threading.Lock()

    @property
    def routes(self) -> Routes:
        return self._routes

    def swap(self, routes: Routes) -> bool:
        """Serve ``routes`` from now on unless the current table is newer; True if swapped."""
        with self._lock:
            if routes.generation < self._routes.generation:
                return False
            self._routes = routes  # one reference assignment: readers see the old or the new table
            return True

    def targets(self, hostname: str) -> tuple[tuple[str, int], ...] | None:
        """The (host key, port) pairs serving ``hostname`` (exact name, else a one-label wildcard)."""
        table = self._routes.routes
        name = hostname.lower()
        if name in table:
            return table[name]
        _, dot, parent = name.partition(".")
        return table.get(f"*.{parent}") if dot and parent else None

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()  # authoritative answer, recursion not offered
        reply.header.ra = 0
        question = request.q
        qname = str(question.qname).lower()
        routes = self._routes
        if qname.endswith("." + ROUTES_ZONE):
            targets = self.targets(qname[: -len(ROUTES_ZONE) - 1])
            if not targets:
                reply.header.rcode = RCODE.NXDOMAIN
            elif question.qtype in (QTYPE.SRV, QTYPE.ANY):
                for key, port in targets:
                    srv = SRV(priority=10, weight=10, port=port, target=host_target(key))
                    reply.add_answer(RR(question.qname, QTYPE.SRV, rdata=srv, ttl=TTL))
        elif qname.endswith("." + HOSTS_ZONE):
            key = qname[: -len(HOSTS_ZONE) - 1]
            address = routes.hosts.get(key)
            if address is None:
                reply.header.rcode = RCODE.NXDOMAIN
            else:
                ip = ipaddress.ip_address(address)
                if ip.version == 4 and question.qtype in (QTYPE.A, QTYPE.ANY):
                    reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
                elif ip.version == 6 and question.qtype in (QTYPE.AAAA, QTYPE.ANY):
                    reply.add_answer(RR(question.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=TTL))
        else:
            reply.header.rcode = RCODE.REFUSED  # not our zone: we resolve nothing else
        return reply


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    """dnslib's logger prints every query; log only decoding errors, at debug level."""

    def __init__(self) -> None:
        super().__init__(log="error", prefix=False, logf=lambda text: log.debug("dns: %s", text))


class EdgeDNS:
    """The resolver served on ``address`` over UDP and TCP on one port (0: a free one)."""

    def __init__(self, resolver: RoutesResolver, address: str = "127.0.0.1", port: int = 0) -> None:
        self.resolver = resolver
        self._servers: list[DNSServer] = []
        self._started = False
        self.address = address
        self.port = self._bind(port)

    def _bind(self, port: int, attempts: int = 20) -> int:
        for _ in range(attempts if port == 0 else 1):
            udp = DNSServer(self.resolver, address=self.address, port=port, logger=_QuietLogger())
            chosen = int(udp.server.server_address[1])
            try:
                tcp = DNSServer(
                    self.resolver, address=self.address, port=chosen, tcp=True, logger=_QuietLogger()
                )
            except OSError:
                udp.server.server_close()
                if port != 0:
                    raise
                continue  # the TCP side of a random UDP port is taken: try another
            self._servers = [udp, tcp]
            return chosen
        raise OSError(f"no free port for the edge DNS server on {self.address}")

    def start(self) -> None:
        for server in self._servers:
            server.start_thread()
        self._started = True

    def stop(self) -> None:
        """Stop serving (if started) and close the sockets."""
        for server in self._servers:
            if self._started:
                server.stop()  # shutdown() waits for serve_forever: only when it runs
            server.server.server_close()
        self._started = False
