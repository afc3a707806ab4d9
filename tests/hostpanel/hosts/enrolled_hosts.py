"""Helpers of the tests of enrolled hosts' internal API (conftest.py has the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rest_framework.test import APIClient

from hostpanel.agent import probes, remote
from tests.hostpanel.hosts.fake_engine import FakeEngine


def pem(key: X25519PrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


def as_host(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class NoClaims:
    """The agent's client for claims: none is asked for here (no spec changes)."""

    def claim(self, replica_id: int, generation: int) -> bool:
        raise AssertionError("no claim expected")


class Agent:
    """One enrolled host's agent against the panel's real internal API."""

    def __init__(self, token: str, engine: FakeEngine, state_dir: Path, queries: Any) -> None:
        self.panel = as_host(token)
        self.engine = engine
        self.state_dir = state_dir
        self.queries = queries

    def cycle(self) -> tuple[remote.ReconcileReport, dict[int, dict[str, Any]]]:
        """Fetch the document, apply it (no query), report the states; the report and the states."""
        answer = self.panel.get("/internal/v1/host/desired")
        assert answer.status_code == 200, answer.content
        doc = json.loads(answer.content)
        report = remote.ReconcileReport()
        with self.queries(0):
            states = remote.apply(self.engine, NoClaims(), doc, self.state_dir, report)  # type: ignore[arg-type]
        written = self.panel.post("/internal/v1/host/report", {"replicas": states}, format="json")
        assert written.status_code == 200, written.content
        assert written.json()["ignored"] == []
        return report, {s["replica"]: s for s in states}

    def probes_done(self) -> None:
        probes.runner().wait_idle(10)
