"""A roll through the API: its progress on the app, a failed release with its reason, refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.deployments import rollout
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db

WEB = {"name": "web", "image": "busybox:latest", "command": ["httpd", "-f", "-p", "8080"], "http_port": 8080}


@pytest.fixture
def dev(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


def url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/apps/{suffix}"


def serving_app(api: Any, dev: Any, tenant: Tenant) -> App:
    assert api(dev).post(url(tenant), WEB, format="json").status_code == 201
    Replica.objects.update(state=Replica.State.RUNNING, ready=True)  # what the agent writes
    return App.objects.get(tenant=tenant, name="web")


def test_a_deploy_shows_its_roll_and_keeps_the_current_release_until_it_ends(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    serving_app(api, dev, tenant)
    r = api(dev).post(url(tenant, "web/deploy/"), {"env": {"V": "2"}}, format="json")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["release"]["version"] == 1  # still current: v2 is not ready yet
    assert body["rollout"]["state"] == "rolling" and body["rollout"]["release"] == 2
    assert body["rollout"]["previous"] == 1 and body["rollout"]["kind"] == "deploy"
    assert "waiting for replica 1 to become ready" in body["rollout"]["phase"]
    by_release = sorted((x["release"], x["ready"]) for x in body["replicas"])
    assert by_release == [(1, True), (2, False)]
    releases = api(dev).get(url(tenant, "web/releases/")).json()["results"]
    assert [(x["version"], x["status"]) for x in releases] == [(2, "rolling"), (1, "")]


def test_a_release_that_never_gets_ready_is_failed_with_its_reason(
    api: Any, dev: Any, tenant: Tenant, host: Host, settings: Any
) -> None:
    settings.HOSTPANEL_ROLL_DEADLINE_SECONDS = 30
    app = serving_app(api, dev, tenant)
    api(dev).post(url(tenant, "web/deploy/"), {"http_port": 9999}, format="json")
    rollout.advance(app.pk, now=timezone.now() + timedelta(seconds=31))
    body = api(dev).get(url(tenant, "web/")).json()
    assert body["release"]["version"] == 1 and body["release"]["http_port"] == 8080
    assert body["rollout"]["state"] == "failed"
    assert "http_port 9999" in body["rollout"]["message"]
    assert [x["release"] for x in body["replicas"]] == [1]
    (v2, _) = api(dev).get(url(tenant, "web/releases/")).json()["results"]
    assert v2["status"] == "failed" and "not ready within 30s" in v2["status_message"]


def test_no_room_for_a_roll_is_a_409_that_says_why_and_changes_nothing(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    Host.objects.filter(pk=host.pk).update(cpu_millis=300)
    serving_app(api, dev, tenant)
    r = api(dev).post(url(tenant, "web/deploy/"), {"env": {"V": "2"}}, format="json")
    assert r.status_code == 409, r.json()
    assert "rolling deploy starts a new replica next to the running ones" in str(r.json())
    body = api(dev).get(url(tenant, "web/")).json()
    assert body["release"]["version"] == 1 and body["rollout"] is None
    assert len(api(dev).get(url(tenant, "web/releases/")).json()["results"]) == 1


def test_another_tenant_sees_nothing_of_the_roll(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    serving_app(api, dev, tenant)
    api(dev).post(url(tenant, "web/restart/"), format="json")
    other = TenantFactory(slug="rival")
    stranger = MembershipFactory(tenant=other, role=Role.OWNER).user
    assert api(stranger).get(url(tenant, "web/")).status_code == 404
    assert api(stranger).post(url(tenant, "web/deploy/"), {"env": {}}, format="json").status_code == 404
    assert api(stranger).get(url(other, "web/")).status_code == 404
