"""The logs endpoint's cursor and download options (the agent call is the dispatch seam)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.deployments.models import Replica
from hostpanel.tenants.models import Role
from tests.hostpanel.factories import TenantFactory

LINES = [
    {"cursor": "2026-11-29T18:00:00.000000001+00:00#0", "stream": "stdout", "time": "t1", "text": "hello"},
    {"cursor": "2026-11-29T18:00:00.000000002+00:00#0", "stream": "stderr", "time": "t2", "text": "oops"},
]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    made: list[tuple[Any, ...]] = []

    def fake(replica_id: int, queue: str, tail: int, after: str | None) -> dict[str, Any]:
        made.append((replica_id, queue, tail, after))
        return {"lines": LINES, "skipped": 3, "lost": True}

    monkeypatch.setattr("hostpanel.hosts.dispatch.fetch_log_lines", fake)
    return made


@pytest.fixture
def replica(tenant: Any, make_app: Callable[..., Any]) -> Replica:
    make_app(tenant)
    return Replica.objects.get(app__tenant=tenant)


def test_lines_after_a_cursor_say_what_is_missing(
    api: Any, member: Any, tenant: Any, replica: Replica, calls: list[Any]
) -> None:
    viewer = member(tenant, Role.VIEWER)
    cursor = LINES[0]["cursor"]
    r = api(viewer).get(f"/api/v1/tenants/{tenant.slug}/containers/{replica.pk}/logs/", {"after": cursor})
    assert r.status_code == 200
    assert r.json() == LINES
    assert (r["X-Log-Skipped"], r["X-Log-Lost"]) == ("3", "true")
    assert calls == [(replica.pk, "host.h1", 100, cursor)]


def test_download_is_a_text_file(
    api: Any, member: Any, tenant: Any, replica: Replica, calls: list[Any]
) -> None:
    viewer = member(tenant, Role.VIEWER)
    r = api(viewer).get(f"/api/v1/tenants/{tenant.slug}/containers/{replica.pk}/logs/?download=1")
    assert r.status_code == 200
    assert r.content.decode() == "t1 stdout hello\nt2 stderr oops\n"
    assert r["Content-Disposition"] == f'attachment; filename="{replica.container_name}.log"'


def test_bad_cursor_and_other_tenants_are_refused_without_asking_the_agent(
    api: Any, member: Any, tenant: Any, replica: Replica, calls: list[Any]
) -> None:
    viewer = member(tenant, Role.VIEWER)
    base = f"/api/v1/tenants/{tenant.slug}/containers/{replica.pk}/logs/"
    r = api(viewer).get(base, {"after": "not-a-cursor"})
    assert r.status_code == 400 and "not a log cursor" in str(r.json())
    outsider = member(TenantFactory(slug="other"), Role.OWNER)
    assert api(outsider).get(base, {"download": "1"}).status_code == 404
    assert api(None).get(base, {"download": "1"}).status_code in (401, 403)
    assert calls == []
