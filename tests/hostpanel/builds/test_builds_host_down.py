"""A build whose host goes down, or whose agent restarts, ends as failed with the reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.hosts import services as hosts
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import HostFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[dict[str, str]]]]:
    """(build id, lines) sent to the log pipeline (the adapter's seam)."""
    sent: list[tuple[str, list[dict[str, str]]]] = []
    monkeypatch.setattr(services, "_publish", lambda key, lines: sent.append((key, lines)))
    return sent


def make_build(tenant: Tenant, host: Host, status: str, **fields: Any) -> Build:
    return Build.objects.create(
        tenant=tenant, name="web:1", reference="acme/web:1", host=host, status=status, **fields
    )


def test_builds_of_a_host_marked_down_fail_with_the_reason(
    tenant: Tenant,
    host: Host,
    settings: Any,
    tmp_path: Path,
    on_commit: Callable[[], Any],
    published: list[tuple[str, list[dict[str, str]]]],
) -> None:
    other = HostFactory(name="h2")
    archive = tmp_path / "context-1.tar"
    archive.write_bytes(b"tar")
    running = make_build(
        tenant, host, "running", output=[{"cursor": "7", "stream": "stdout", "text": "compiling"}]
    )
    queued = make_build(tenant, host, "queued", context_archive=str(archive))
    done = make_build(tenant, host, "succeeded")
    elsewhere = make_build(tenant, other, "running")
    Host.objects.filter(pk=host.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    Host.objects.filter(pk=other.pk).update(last_heartbeat=timezone.now())
    with on_commit():
        assert hosts.mark_stale_hosts() == [host]
    running.refresh_from_db()
    queued.refresh_from_db()
    assert running.status == "failed" and running.finished_at is not None
    assert running.error == "host h1 went down while the build was running; start the build again"
    assert running.output == [
        {"cursor": "7", "stream": "stdout", "text": "compiling"},
        {"cursor": "8", "stream": "error", "text": running.error},
    ]
    assert queued.status == "failed" and "while the build was queued" in queued.error
    assert not archive.exists() and queued.context_archive == ""
    assert Build.objects.get(pk=done.pk).status == "succeeded"
    assert Build.objects.get(pk=elsewhere.pk).status == "running"
    assert sorted(published) == sorted(
        [
            (str(running.pk), [running.output[-1]]),
            (str(queued.pk), [{"cursor": "1", "stream": "error", "text": queued.error}]),
        ]
    )


def test_an_agent_start_fails_the_builds_its_predecessor_left_running(
    tenant: Tenant,
    host: Host,
    published: list[tuple[str, list[dict[str, str]]]],
    on_commit: Callable[[], Any],
) -> None:
    running = make_build(tenant, host, "running")
    queued = make_build(tenant, host, "queued")  # still in the host's queue: the new agent runs it
    with on_commit():
        hosts.register_host("h1", cpu_millis=2000, memory_bytes=2**30)
    running.refresh_from_db()
    assert running.status == "failed"
    assert (
        running.error == "the host agent of h1 restarted while the build was running; start the build again"
    )
    assert Build.objects.get(pk=queued.pk).status == "queued"
    assert published == [(str(running.pk), [{"cursor": "1", "stream": "error", "text": running.error}])]


def test_a_build_failed_meanwhile_is_not_run_nor_overwritten(
    agents: EnrolledAgents, tenant: Tenant, host: Host, settings: Any, tmp_path: Path, published: Any
) -> None:
    """The late agent of a host that was marked down neither runs its failed build nor revives it."""
    archive = tmp_path / "context-2.tar"
    archive.write_bytes(b"tar")
    build = make_build(tenant, host, "queued", context_archive=str(archive))
    services.fail_host_builds(host, services.HOST_DOWN, states=("queued", "running"))

    class NoEngine:
        """The agent must stop before it touches the engine."""

    result = agents.build(build, NoEngine())  # type: ignore[arg-type]
    assert result.status == "failed" and "went down" in result.error
    assert not archive.exists()
