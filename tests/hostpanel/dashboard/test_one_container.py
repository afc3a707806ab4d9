"""One container's own stop / start / restart (service, API, page, agent) and its CPU and memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.errors import Conflict
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def web(tenant: Tenant, make_app: Callable[..., App]) -> App:
    return make_app(tenant, "web", replicas=2, cpu_millis=500, memory_bytes=64 * 1024**2)


def replica(app: App, index: int = 0) -> Replica:
    return Replica.objects.select_related("app", "host").get(app=app, index=index)


def test_the_agent_stops_starts_and_restarts_only_that_container(
    agents: EnrolledAgents, web: App, host: Host, admin_actor: Actor
) -> None:
    engine = FakeEngine()
    agents.reconcile(engine, host)
    deployments.container_action(admin_actor, replica(web, 0), "stop")
    report = agents.reconcile(engine, host)
    assert report.stopped == ["acme-web-0"] and engine.get("acme-web-1").is_running
    assert replica(web, 0).state == Replica.State.STOPPED
    assert agents.reconcile(engine, host).started == []  # stays stopped
    assert not engine.get("acme-web-0").is_running

    deployments.container_action(admin_actor, replica(web, 0), "start")
    agents.reconcile(engine, host)
    assert engine.get("acme-web-0").is_running and replica(web, 0).state == Replica.State.RUNNING

    deployments.container_action(admin_actor, replica(web, 1), "restart")
    assert agents.reconcile(engine, host).restarted == ["acme-web-1"]
    assert agents.reconcile(engine, host).restarted == []  # once
    assert not replica(web, 1).restart_requested


def test_the_service_is_audited_and_refuses_what_makes_no_sense(
    web: App, admin_actor: Actor, sent_reconciles: list[Any], on_commit: Callable[[], Any]
) -> None:
    one = replica(web)
    sent_reconciles.clear()
    with on_commit():
        deployments.container_action(admin_actor, one, "stop")
    assert AuditLog.objects.filter(action="container.stop", result="ok", object_repr="acme-web-0").exists()
    assert [host_id for host_id, _ in sent_reconciles] == [one.host_id]  # its host is told at once
    with pytest.raises(Conflict, match="is stopped; start it instead"):
        deployments.container_action(admin_actor, replica(web), "restart")
    assert AuditLog.objects.filter(action="container.restart", result="failed").exists()
    deployments.set_state(admin_actor, App.objects.get(pk=web.pk), App.State.STOPPED)
    assert not replica(web).stop_requested  # the app's own stop and start apply to all
    with pytest.raises(Conflict, match="start the app first"):
        deployments.container_action(admin_actor, replica(web), "start")


def test_api_actions_for_developers_only_and_only_in_their_tenant(
    web: App, tenant: Tenant, member: Callable[..., Any], make_app: Callable[..., App]
) -> None:
    one = replica(web)
    url = f"/api/v1/tenants/acme/containers/{one.pk}"
    dev, viewer = APIClient(), APIClient()
    dev.force_authenticate(member(tenant, Role.DEVELOPER))
    viewer.force_authenticate(member(tenant, Role.VIEWER))
    assert viewer.post(f"{url}/stop/").status_code == 403
    r = dev.post(f"{url}/stop/")
    assert r.status_code == 200 and r.json()["stop_requested"] is True
    assert dev.post(f"{url}/restart/").status_code == 409
    assert dev.post(f"{url}/start/").json()["stop_requested"] is False
    assert dev.post(f"{url}/restart/").json()["restart_requested"] is True

    other = TenantFactory(slug="other")
    theirs = replica(make_app(other, "theirs"))
    outsider = APIClient()
    outsider.force_authenticate(member(other, Role.OWNER))
    assert outsider.post(f"{url}/stop/").status_code == 404
    assert dev.post(f"/api/v1/tenants/acme/containers/{theirs.pk}/stop/").status_code == 404
    assert not Replica.objects.filter(stop_requested=True).exists()


def test_page_buttons_and_live_use(
    web: App, tenant: Tenant, member: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hostpanel.hosts import dispatch

    one = replica(web)
    Replica.objects.filter(pk=one.pk).update(state=Replica.State.RUNNING)
    readings = iter(
        [
            {"at": 100.0, "cgroup": {"cpu_usage_ns": 1_000_000_000, "memory_usage": 12 * 1024**2, "pids": 3}},
            {"at": 102.0, "cgroup": {"cpu_usage_ns": 1_500_000_000, "memory_usage": 13 * 1024**2, "pids": 4}},
        ]
    )
    monkeypatch.setattr(dispatch, "fetch_stats", lambda replica_id, queue: next(readings))
    client = signed_in(member(tenant, Role.DEVELOPER))
    page = client.get(f"/t/acme/containers/{one.pk}/").content.decode()
    assert 'data-action="container-stop"' in page and 'data-action="container-restart"' in page
    first = client.get(f"/t/acme/containers/{one.pk}/live/", HTTP_HX_REQUEST="true").content.decode()
    assert "12 MiB of 64 MiB" in first and "measuring" in first
    assert "&quot;cpu_ns&quot;: 1000000000" in first or '"cpu_ns": 1000000000' in first
    second = client.get(f"/t/acme/containers/{one.pk}/live/?cpu_ns=1000000000&at=100.0").content.decode()
    # 0.5 s of CPU in 2 s: 0.25 cores, half of its 0.5 cores
    assert "0.25 cores" in second and "50% of its 0.5 cores" in second and "4 of 128" in second

    assert client.post(f"/t/acme/containers/{one.pk}/stop/").status_code == 302
    assert replica(web).stop_requested
    assert AuditLog.objects.filter(action="container.stop", result="ok").exists()
    page = client.get(f"/t/acme/containers/{one.pk}/").content.decode()
    assert 'data-action="container-start"' in page and "stopped on request" in page
    app_page = client.get("/t/acme/apps/web/", HTTP_HX_REQUEST="true").content.decode()
    assert "1 stopped on request" in app_page


def test_viewers_and_other_tenants_cannot_press_the_buttons(
    web: App, tenant: Tenant, member: Callable[..., Any], make_app: Callable[..., App]
) -> None:
    one = replica(web)
    viewer = signed_in(member(tenant, Role.VIEWER))
    assert "data-action" not in viewer.get(f"/t/acme/containers/{one.pk}/").content.decode()
    assert viewer.post(f"/t/acme/containers/{one.pk}/stop/").status_code == 403
    other = TenantFactory(slug="other")
    theirs = replica(make_app(other, "theirs"))
    dev = signed_in(member(tenant, Role.DEVELOPER))
    assert dev.post(f"/t/acme/containers/{theirs.pk}/stop/").status_code == 404
    assert dev.get(f"/t/acme/containers/{theirs.pk}/live/").status_code == 404
    assert dev.post(f"/t/acme/containers/{one.pk}/explode/").status_code == 404
    assert not Replica.objects.filter(stop_requested=True).exists()
