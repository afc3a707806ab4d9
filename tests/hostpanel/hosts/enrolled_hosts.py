"""Helpers of the tests of enrolled hosts' internal API (conftest.py has the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from hostpanel.agent import probes, remote
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.deployments.models import App, Replica
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
    """The agent's own client of the internal API (every method of it), its calls going through this
    test's API client to the panel in this process. It counts the queries the panel's answers make,
    so the agent's own can be asserted to be none (:func:`reconcile`)."""

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


def reconcile(engine: Any, client: PanelClient, state_dir: Path) -> remote.ReconcileReport:
    """One reconcile of the agent without the database (:func:`remote.reconcile`, as its loop and
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
