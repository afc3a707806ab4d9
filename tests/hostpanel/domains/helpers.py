"""Real servers for the domain tests: a DNS server (dnslib) answering from a dict, and Caddy."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from tests.stack import free_port, stop_process, wait_for


class TableResolver(BaseResolver):  # type: ignore[misc]
    """Answers A and TXT from ``records`` ({(name, "A"|"TXT"): [values]}); anything else NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        values = self.records.get((name, qtype), [])
        for value in values:
            rdata = A(value) if qtype == "A" else TXT(value)
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=1))
        if not values and not any(key[0] == name for key in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextmanager
def dns_server() -> Iterator[tuple[TableResolver, str]]:
    """A DNS server on 127.0.0.1 (UDP, a free port): (its resolver table, "127.0.0.1:<port>")."""
    resolver = TableResolver()
    server = DNSServer(resolver, port=0, address="127.0.0.1", logger=_Quiet())
    server.start_thread()
    try:
        yield resolver, f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Caddy:
    """A real Caddy, run from a JSON config on free ports (admin API off), storage under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.http_port = free_port()
        self.https_port = free_port()
        self.storage = root / "storage"
        self.process: subprocess.Popen[bytes] | None = None

    def certificates_dir(self, issuer_key: str = "local") -> Path:
        return self.storage / "certificates" / issuer_key

    def start(self, http_routes: list[dict[str, Any]], tls_policy: dict[str, Any] | None = None) -> None:
        servers: dict[str, Any] = {
            "plain": {
                "listen": [f"127.0.0.1:{self.http_port}"],
                "routes": http_routes,
                "automatic_https": {"disable": True},
            },
        }
        apps: dict[str, Any] = {
            "http": {"http_port": self.http_port, "https_port": self.https_port, "servers": servers}
        }
        if tls_policy is not None:
            servers["secure"] = {
                "listen": [f"127.0.0.1:{self.https_port}"],
                "routes": [
                    {
                        "handle": [
                            {
                                "handler": "static_response",
                                "status_code": 200,
                                "body": "secure {http.request.host}",
                            }
                        ]
                    }
                ],
                "tls_connection_policies": [{}],
                "automatic_https": {"disable_redirects": True},
            }
            apps["tls"] = {"automation": {"policies": [tls_policy]}}
            apps["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
        config = {
            "admin": {"disabled": True},
            "storage": {"module": "file_system", "root": str(self.storage)},
            "apps": apps,
        }
        path = self.root / "caddy.json"
        path.write_text(json.dumps(config))
        binary = shutil.which("caddy")
        assert binary, "caddy is not installed (make install)"
        log = open(self.root / "caddy.log", "wb")  # noqa: SIM115 (the process keeps it)
        env = {
            "HOME": str(self.root),
            "XDG_DATA_HOME": str(self.root / "data"),
            "XDG_CONFIG_HOME": str(self.root / "cfg"),
            "PATH": "/usr/bin:/bin",
        }
        self.process = subprocess.Popen(
            [binary, "run", "--config", str(path)], stdout=log, stderr=log, env=env
        )
        wait_for(self._listening, 20, "caddy listening")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError("caddy exited:\n" + (self.root / "caddy.log").read_text()[-3000:])
        try:
            socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
