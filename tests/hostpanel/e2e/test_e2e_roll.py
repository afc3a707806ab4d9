"""End to end: rolling deploys of a busybox httpd app under steady load, with a real agent and containers.

The load goes to the replicas the rotation names, refreshed once a second the
way the edge proxy refreshes its upstreams (hostpanel/edge); the requests reach
each replica's published port. Zero failed requests across a deploy, a restart,
a scale and a release that never becomes ready (which leaves the old release
current and serving).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import close_old_connections, connection

from hostpanel.deployments import rotation
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Release, Rollout
from tests.hostpanel.e2e.conftest import wait_for
from tests.loadgen import Load

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

PORT = 8080
# serves "$V" at / on PORT (busybox httpd, a file written at start)
HTTPD = ["sh", "-c", f'mkdir -p /www && echo "$V" > /www/index.html && exec httpd -f -p {PORT} -h /www']
REFRESH = 1.0  # seconds: how often the stand-in edge rereads the rotation (Caddy's dynamic upstreams: 1 s)


def upstreams(app_id: int) -> list[str]:
    """The URLs of the app's serving replicas: host address and the published port of http_port."""
    app = App.objects.get(pk=app_id)
    urls = []
    for replica in rotation.serving_replicas(app):
        port = next(p["host_port"] for p in replica.ports if p["container_port"] == replica.release.http_port)
        urls.append(f"http://{replica.host.address}:{port}/")
    return urls


@contextmanager
def edge_stand_in(app_id: int) -> Iterator[Callable[[], str]]:
    """A picker over the rotation, reread every REFRESH seconds in a thread (as the edge's DNS is)."""
    current: list[str] = upstreams(app_id)
    stop = threading.Event()
    counter = itertools.count()

    def refresh() -> None:
        while not stop.wait(REFRESH):
            try:
                found = upstreams(app_id)
                if found:  # an empty answer keeps the last list, as a resolver failure would
                    current[:] = found
            finally:
                close_old_connections()
        connection.close()

    thread = threading.Thread(target=refresh, daemon=True)
    thread.start()
    try:
        yield lambda: current[next(counter) % len(current)]
    finally:
        stop.set()
        thread.join(5)


def rollout_of(release: Release) -> Rollout | None:
    return Rollout.objects.filter(release=release).order_by("-pk").first()


def rolled(release: Release) -> Callable[[], str]:
    def check() -> str:
        r = rollout_of(release)
        return r.state if r is not None and r.state != "rolling" else ""

    return check


@pytest.fixture
def short_rolls(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Rolls here: 2 s of drain (above the 1 s refresh), 15 s to become ready (agents read the env)."""
    # published ports of our own: engineers' test runs share this machine's default range
    low = random.randrange(40000, 60000, 200)
    monkeypatch.setenv("HOSTPANEL_PORT_RANGE", f"{low}-{low + 199}")
    settings.HOSTPANEL_PORT_RANGE = f"{low}-{low + 199}"
    monkeypatch.setenv("HOSTPANEL_ROLL_DRAIN_SECONDS", "2")
    monkeypatch.setenv("HOSTPANEL_ROLL_DEADLINE_SECONDS", "15")
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS = 2
    settings.HOSTPANEL_ROLL_DEADLINE_SECONDS = 15


def test_rolls_under_load_lose_no_request_and_a_never_ready_release_changes_nothing(
    short_rolls: None, live_tenant: Any
) -> None:
    lt = live_tenant("roll", "rollco", "roll-dev", "developer")
    app = deployments.create_app(
        lt.admin,
        lt.tenant,
        "web",
        deployments.AppSpec(image="busybox:latest", command=HTTPD, env={"V": "v1"}, http_port=PORT),
    )
    wait_for(lambda: upstreams(app.pk), 60, f"v1 to serve\n{lt.agent.log_tail()}")
    with edge_stand_in(app.pk) as pick:
        load = Load(pick).start()
        try:
            wait_for(lambda: len(load.samples) > 20, 20, "the load to run")
            v2 = deployments.deploy(lt.admin, App.objects.get(pk=app.pk), env={"V": "v2"})
            assert App.objects.get(pk=app.pk).current_release.version == 1  # until v2 is ready
            assert wait_for(rolled(v2), 60, f"v2 to roll\n{lt.agent.log_tail()}") == "succeeded"
            switched = time.monotonic()
            wait_for(lambda: load.bodies_since(switched + REFRESH) == {"v2"}, 10, "only v2 to answer")

            app = App.objects.get(pk=app.pk)
            before = {r.pk for r in app.replicas.all()}
            deployments.restart(lt.admin, app)
            restart = Rollout.objects.filter(app=app, kind="restart").get()
            wait_for(lambda: rolled(restart.release)() == "succeeded", 60, "the restart roll")
            assert not before & {r.pk for r in app.replicas.all()}  # every container was replaced

            v3 = deployments.scale(lt.admin, App.objects.get(pk=app.pk), 2)
            assert wait_for(rolled(v3), 60, "the scale to 2") == "succeeded"
            wait_for(lambda: len(upstreams(app.pk)) == 2, 10, "two serving replicas")

            # listens on no port at all: never ready
            v4 = deployments.deploy(
                lt.admin, App.objects.get(pk=app.pk), command=["sleep", "3600"], env={"V": "v4"}
            )
            assert wait_for(rolled(v4), 60, f"v4 to fail\n{lt.agent.log_tail()}") == "failed"
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
