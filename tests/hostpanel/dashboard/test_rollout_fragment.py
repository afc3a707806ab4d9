"""The app page shows a rolling deploy live: progress while it rolls, the reason when it failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from hostpanel.deployments import rollout
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db

HTTP = {"image": "busybox:latest", "command": ["httpd", "-f", "-p", "8080"], "http_port": 8080}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def rolling(tenant: Tenant, make_app: Callable[..., App], admin_actor: Any, settings: Any) -> App:
    settings.HOSTPANEL_ROLL_DEADLINE_SECONDS = 30
    app = make_app(tenant, "web", **HTTP)
    Replica.objects.update(state=Replica.State.RUNNING, ready=True)
    deployments.deploy(admin_actor, App.objects.get(pk=app.pk), env={"V": "2"})
    return app


def test_the_live_part_of_the_app_page_shows_the_roll_in_progress(
    rolling: App, tenant: Tenant, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.VIEWER))
    page = client.get("/t/acme/apps/web/").content.decode()
    live = client.get("/t/acme/apps/web/", HTTP_HX_REQUEST="true").content.decode()
    for html in (page, live):
        assert 'id="rollout" data-state="rolling"' in html
        assert "Rolling deploy of v2" in html and "New replicas ready: 0 of 1" in html
        assert "waiting for replica 1 to become ready" in html
        assert "v1 stays current and serving" in html


def test_a_failed_roll_shows_its_reason_and_the_release_that_stays(
    rolling: App, tenant: Tenant, member: Callable[..., Any]
) -> None:
    rollout.advance(rolling.pk, now=timezone.now() + timedelta(seconds=31))
    live = signed_in(member(tenant, Role.VIEWER)).get("/t/acme/apps/web/", HTTP_HX_REQUEST="true")
    html = live.content.decode()
    assert 'data-state="failed"' in html and "not ready within 30s" in html
    assert "v1 is still current and serving" in html


def test_an_app_without_a_roll_shows_none_and_another_tenant_sees_nothing(
    rolling: App, tenant: Tenant, member: Callable[..., Any], make_app: Callable[..., App]
) -> None:
    make_app(tenant, "calm", **HTTP)
    client = signed_in(member(tenant, Role.VIEWER))
    assert 'id="rollout"' not in client.get("/t/acme/apps/calm/").content.decode()
    rival = TenantFactory(slug="rival")
    stranger = signed_in(member(rival, Role.OWNER))
    assert stranger.get("/t/acme/apps/web/", HTTP_HX_REQUEST="true").status_code == 404


def test_a_restart_button_says_a_roll_started_not_done(
    tenant: Tenant, make_app: Callable[..., App], member: Callable[..., Any], settings: Any
) -> None:
    make_app(tenant, "web", **HTTP)
    Replica.objects.update(state=Replica.State.RUNNING, ready=True)
    page = signed_in(member(tenant, Role.DEVELOPER)).post("/t/acme/apps/web/restart/", follow=True)
    html = page.content.decode()
    assert "Restart of web: rolling out" in html and "Restart of web: done." not in html
