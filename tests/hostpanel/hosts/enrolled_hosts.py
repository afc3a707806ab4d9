"""Helpers of the tests of enrolled hosts' internal API (conftest.py has the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from engine.runtime.model import ContainerSpec
from hostpanel.agent import credentials as store
from hostpanel.agent import probes, remote
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.agent.remote_build import run_remote_build
from hostpanel.builds.models import Build
from hostpanel.deployments import desired
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts import enrollment, redis_acl
from hostpanel.hosts.models import Host
from tests.hostpanel.hosts.fake_engine import FakeEngine


def pem(key: X25519PrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


def place(app: App, host: str = "sa") -> Replica:
    """Put the app's (one) replica on ``host`` (an enrolled host of the ``enrolled`` fixture)."""
    Replica.objects.filter(app=app).update(host=Host.objects.get(name=host))
    return Replica.objects.get(app=app)


def as_host(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class NoClaims:
    """The agent's client for claims: none is asked for here (no spec changes)."""

    def claim(self, replica_id: int, generation: int, restart: bool = False) -> bool:
        raise AssertionError("no claim expected")


class PanelClaims:
    """The agent's claims through the panel's real internal API (``POST host/claim``). It counts
    the queries the panel's answers make, so the agent's own can still be asserted to be none."""

    def __init__(self, panel: APIClient) -> None:
        self.panel = panel
        self.queries = 0
        self.asked: list[tuple[int, bool]] = []

    def claim(self, replica_id: int, generation: int, restart: bool = False) -> bool:
        body = {"replica": replica_id, "generation": generation, "restart": restart}
        with CaptureQueriesContext(connection) as panel_queries:
            answer = self.panel.post("/internal/v1/host/claim", body, format="json")
        self.queries += len(panel_queries.captured_queries)
        assert answer.status_code == 200, answer.content
        self.asked.append((replica_id, restart))
        granted: bool = answer.json()["granted"]
        return granted


class PanelClient(InternalClient):
    """The agent's own client of the internal API (every method of it, files too), its calls going
    through this test's API client to the panel in this process. It counts the queries the panel's
    answers make, so the agent's own can be asserted to be none (:func:`reconcile`)."""

    def __init__(self, panel: APIClient) -> None:
        super().__init__("https://panel.example")
        self.panel = panel
        self.queries = 0
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = "" if body is None else json.dumps(body)
        with CaptureQueriesContext(connection) as panel_queries:
            answer = self.panel.generic(method, "/internal/v1/" + path, data, "application/json")
        self.queries += len(panel_queries.captured_queries)
        self.calls.append((method, path, body))
        if answer.status_code >= 400:
            raise PanelError(f"{answer.status_code}: {answer.content[:300]!r}", answer.status_code)
        result: dict[str, Any] = json.loads(answer.content or b"{}")
        return result

    def _count(self, method: str, path: str, data: bytes, content_type: str) -> Any:
        with CaptureQueriesContext(connection) as panel_queries:
            answer = self.panel.generic(method, "/internal/v1/" + path, data, content_type)
        self.queries += len(panel_queries.captured_queries)
        self.calls.append((method, path, None))
        if answer.status_code >= 400:
            raise PanelError(f"{answer.status_code}: {answer.content[:300]!r}", answer.status_code)
        return answer

    def download(self, path: str, into: BinaryIO) -> None:
        answer = self._count("GET", path, b"", "application/json")
        # read whole, the test client closes the response itself (a second close() would fire
        # request_finished and close the test's database connection inside its transaction)
        into.write(b"".join(answer.streaming_content))

    def upload(self, path: str, source: BinaryIO, size: int) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self._count("POST", path, source.read(), "application/octet-stream").content
        )
        return result


def reconcile(engine: Any, client: PanelClient, state_dir: Path) -> remote.ReconcileReport:
    """One reconcile of the agent (:func:`remote.reconcile`, as its loop and
    its ``reconcile_host`` task run it) against the panel; it makes no query of its own."""
    before = client.queries
    with CaptureQueriesContext(connection) as seen:
        report = remote.reconcile(engine, client, state_dir)
    assert len(seen.captured_queries) == client.queries - before  # the panel's answers only
    return report


class Agent:
    """One enrolled host's agent against the panel's real internal API."""

    def __init__(self, token: str, engine: FakeEngine, state_dir: Path, queries: Any) -> None:
        self.panel = as_host(token)
        self.engine = engine
        self.state_dir = state_dir
        self.queries = queries

    def cycle(
        self, claims: PanelClaims | None = None
    ) -> tuple[remote.ReconcileReport, dict[int, dict[str, Any]]]:
        """Fetch the document, apply it (no query of the agent's), report the states; the report and
        the states. ``claims``: the panel answers claims (else none may be asked)."""
        answer = self.panel.get("/internal/v1/host/desired")
        assert answer.status_code == 200, answer.content
        doc = json.loads(answer.content)
        report = remote.ReconcileReport()
        if claims is None:
            with self.queries(0):
                states = remote.apply(self.engine, NoClaims(), doc, self.state_dir, report)  # type: ignore[arg-type]
        else:
            before = claims.queries
            with CaptureQueriesContext(connection) as seen:
                states = remote.apply(self.engine, claims, doc, self.state_dir, report)  # type: ignore[arg-type]
            assert len(seen.captured_queries) == claims.queries - before  # the panel's answers only
        written = self.panel.post("/internal/v1/host/report", {"replicas": states}, format="json")
        assert written.status_code == 200, written.content
        assert written.json()["ignored"] == []
        return report, {s["replica"]: s for s in states}

    def probes_done(self) -> None:
        probes.runner().wait_idle(10)


class EnrolledAgents:
    """Reconcile hosts as their enrolled agents would (no database of their own): each host is
    enrolled the first time (``host add``'s join token spent with a key this object holds; the Redis
    ACL user, which nothing here uses, is not made), its state directory holds its credentials and
    key, and :func:`remote.reconcile` runs with the agent's :class:`InternalClient` whose calls go to
    the panel's real internal API in this process (sealed secrets too)."""

    def __init__(self, root: Path, monkeypatch: Any) -> None:
        self.root = root
        self.clients: dict[str, PanelClient] = {}
        monkeypatch.setattr(redis_acl, "set_host_user", lambda host, password_sha256: "OK")
        monkeypatch.setattr(store, "client_for", lambda creds: self.clients[creds.name])

    def client(self, host: Host) -> PanelClient:
        """Host ``host``'s agent's client of the internal API (the host enrolled first if need be)."""
        if host.name not in self.clients:
            key = X25519PrivateKey.generate()
            creds = enrollment.register(enrollment.add_host(None, host.name).token, pem(key))
            directory = self.state_dir(host)
            store.save(
                directory, store.AgentCredentials("https://panel.example", host.name, creds.api_token, "", [])
            )
            private = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            store.write_private(directory / store.KEY_FILE, private)
            self.clients[host.name] = PanelClient(as_host(creds.api_token))
        return self.clients[host.name]

    def state_dir(self, host: Host) -> Path:
        return self.root / f"agent-{host.name}"

    def build(self, build: Build, engine: Any) -> Build:
        """Run ``build`` on its host's engine as that host's agent's build worker does
        (:func:`run_remote_build`: claimed, context fetched, output, image and end posted); the row."""
        assert build.host is not None
        run_remote_build(build.pk, engine, self.client(build.host))
        build.refresh_from_db()
        return build

    def reconcile(self, engine: Any, host: Host) -> remote.ReconcileReport:
        """One reconcile of ``host``'s agent on ``engine`` (:func:`reconcile`: no query of its own)."""
        return reconcile(engine, self.client(host), self.state_dir(host))


def spec_of(replica: Replica, values: dict[str, str] | None = None) -> ContainerSpec:
    """The engine spec an agent makes of ``replica``'s entry in its host's document (secrets'
    plain ``values`` as it opens them)."""
    return desired.container_spec(desired.replica_document(replica), values or {})
