"""The /healthz page: 200 with database and engine status, 503 without a database."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import OperationalError
from django.test import Client
from django.test.utils import override_settings

from engine.paths import EnginePaths


@pytest.mark.django_db
def test_healthz_ok_with_engine_root_not_set_up(client: Client, tmp_path: Path) -> None:
    with override_settings(HOSTPANEL_ENGINE_ROOT=tmp_path / "engine", HOSTPANEL_ENGINE_INSTANCE="t1"):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["engine"]["root"] == str(tmp_path / "engine")
    assert body["engine"]["instance"] == "t1"
    assert body["engine"]["ready"] is False
    assert "containers" in body["engine"]["missing"]
    assert not (tmp_path / "engine").exists(), "the health check must not create the engine root"


@pytest.mark.django_db
def test_healthz_reports_ready_engine_root(client: Client, tmp_path: Path) -> None:
    EnginePaths(tmp_path).ensure()
    with override_settings(HOSTPANEL_ENGINE_ROOT=tmp_path):
        body = client.get("/healthz").json()
    assert body["engine"]["ready"] is True
    assert body["engine"]["missing"] == []


@pytest.mark.django_db
def test_healthz_503_when_database_unreachable(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper

    def refuse(self: BaseDatabaseWrapper) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "unreachable"
    assert "engine" in body


def test_root_is_the_dashboard_and_asks_to_log_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_healthz_rejects_post(client: Client) -> None:
    assert client.post("/healthz").status_code == 405
