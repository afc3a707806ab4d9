"""End to end: rolling deploys of a busybox httpd app under steady load through a real Caddy.

A real agent configures the Caddy and answers its upstream lookups from the
routing table; the load sends requests to Caddy with the app's hostname. Zero
failed requests across a deploy, a restart, a scale and a release that never
becomes ready (which leaves the old release current and serving).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.services import Actor
from hostpanel.deployments import rotation
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Release, Rollout
from hostpanel.hosts.models import Host
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import UserFactory
from tests.loadgen import Load
from tests.stack import Agent, Caddy, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

PORT = 8080
# serves "$V" at / on PORT (busybox httpd, a file written at start)
HTTPD = ["sh", "-c", f'mkdir -p /www && echo "$V" > /www/index.html && exec httpd -f -p {PORT} -h /www']
REFRESH = 1.0  # seconds: how often Caddy refreshes its dynamic upstreams


def rollout_of(release: Release) -> Rollout | None:
    return Rollout.objects.filter(release=release).order_by("-pk").first()


def rolled(release: Release) -> Callable[[], str]:
    def check() -> str:
        r = rollout_of(release)
        return r.state if r is not None and r.state != "rolling" else ""

    return check


@pytest.fixture
def roll_env(settings: Any) -> dict[str, str]:
    """Rolls here: 3 s of drain (above the 1 s refresh), 15 s to become ready; published ports of
    our own (engineers' test runs share this machine's default range). For the agent and this process."""
    low = random.randrange(40000, 60000, 200)
    env = {
        "HOSTPANEL_ROLL_DRAIN_SECONDS": "3",
        "HOSTPANEL_ROLL_DEADLINE_SECONDS": "15",
        "HOSTPANEL_PORT_RANGE": f"{low}-{low + 199}",
    }
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS = 3.0
    settings.HOSTPANEL_ROLL_DEADLINE_SECONDS = 15.0
    settings.HOSTPANEL_PORT_RANGE = env["HOSTPANEL_PORT_RANGE"]
    return env


def web_tenant(agents: Callable[..., Agent], caddy: Caddy, env: dict[str, str], slug: str) -> Actor:
    """An agent configuring ``caddy``, tenant ``slug``; returns the staff admin who acts."""
    agents(f"{slug}-h1", caddy.agent_env() | env)
    wait_for(lambda: Host.objects.filter(name=f"{slug}-h1", state="up").exists(), 30, "the agent to register")
    admin = Actor(UserFactory(username=f"{slug}-admin", is_staff=True, is_superuser=True))
    tenants.create_tenant(admin, slug)
    return admin


def answers(caddy: Caddy, hostname: str) -> Callable[[], str]:
    def check() -> str:
        sample = Load(lambda: "", host=hostname).get(f"http://127.0.0.1:{caddy.http_port}/")
        return sample.body if sample.ok else ""

    return check


def test_rolls_under_load_lose_no_request_and_a_never_ready_release_changes_nothing(
    roll_env: dict[str, str], agents: Callable[..., Agent], caddy: Caddy
) -> None:
    admin = web_tenant(agents, caddy, roll_env, "rollco")
    tenant = Tenant.objects.get(slug="rollco")
    spec = deployments.AppSpec(image="busybox:latest", command=HTTPD, env={"V": "v1"}, http_port=PORT)
    app = deployments.create_app(admin, tenant, "web", spec)
    hostname = "web-rollco.localhost"
    wait_for(lambda: answers(caddy, hostname)() == "v1", 60, f"v1 through caddy\n{caddy.log_tail()}")
    load = Load(lambda: f"http://127.0.0.1:{caddy.http_port}/", host=hostname).start()
    try:
        wait_for(lambda: len(load.samples) > 20, 20, "the load to run")
        v2 = deployments.deploy(admin, App.objects.get(pk=app.pk), env={"V": "v2"})
        assert App.objects.get(pk=app.pk).current_release.version == 1  # until v2 is ready
        assert wait_for(rolled(v2), 60, f"v2 to roll\n{caddy.log_tail()}") == "succeeded"
        switched = time.monotonic()
        wait_for(lambda: load.bodies_since(switched + REFRESH) == {"v2"}, 10, "only v2 to answer")

        app = App.objects.get(pk=app.pk)
        before = {r.pk for r in app.replicas.all()}
        deployments.restart(admin, app)
        restart = Rollout.objects.filter(app=app, kind="restart").get()
        wait_for(lambda: rolled(restart.release)() == "succeeded", 60, "the restart roll")
        assert not before & {r.pk for r in app.replicas.all()}  # every container was replaced

        v3 = deployments.scale(admin, App.objects.get(pk=app.pk), 2)
        assert wait_for(rolled(v3), 60, "the scale to 2") == "succeeded"
        wait_for(lambda: len(rotation.serving_ids(app)) == 2, 10, "two serving replicas")

        # listens on no port at all: never ready
        v4 = deployments.deploy(admin, App.objects.get(pk=app.pk), command=["sleep", "3600"], env={"V": "v4"})
        assert wait_for(rolled(v4), 60, f"v4 to fail\n{caddy.log_tail()}") == "failed"
        failed_at = time.monotonic()
        time.sleep(2 * REFRESH)
    finally:
        samples = load.stop()
    app = App.objects.get(pk=app.pk)
    v4.refresh_from_db()
    assert app.current_release.pk == v3.pk and app.current_release.status == "live"
    assert v4.status == "failed" and f"http_port {PORT}" in v4.status_message
    assert sorted(r.release_id for r in app.replicas.all()) == [v3.pk, v3.pk]
    assert {s.body for s in samples if s.at > failed_at} == {"v2"}  # v3 is v2 scaled: same containers
    failures = [s for s in samples if not s.ok]
    assert len(samples) > 200, "the load did not run"
    assert failures == [], f"{len(failures)} of {len(samples)} requests failed: {failures[:5]}"
