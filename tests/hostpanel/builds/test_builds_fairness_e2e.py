"""End to end, as a hostile tenant: one tenant's builds cannot stall the host agent for another.

A real host agent (its control worker and its build worker processes), real Redis and
real containers. Tenant A runs builds that never end (``RUN sleep 600``); tenant B's
logs, scale-up and terminal must answer while A's build still runs (checked by state,
not by the clock); A cannot hold every build slot; a build past its tenant's time limit
is killed, marked failed and leaves nothing on the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from engine.build.recover import BUILD_LABEL
from hostpanel.builds.models import Build
from hostpanel.deployments.models import Replica
from hostpanel.images.models import Image
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import Quota, Role
from hostpanel.terminal.routing import websocket_urlpatterns
from tests.engine.conftest import leaks
from tests.hostpanel.e2e.conftest import LiveTenant, agents, celery_to, live_tenant, redis_url  # noqa: F401
from tests.hostpanel.factories import UserFactory
from tests.stack import Agent, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

ENDLESS = "FROM busybox\nRUN echo started; sleep 600\n"


def client(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def start_build(user: Any, slug: str, name: str, dockerfile: str) -> int:
    r = client(user).post(
        f"/api/v1/tenants/{slug}/builds/", {"name": name, "dockerfile_text": dockerfile}, format="json"
    )
    assert r.status_code == 201, r.json()
    return int(r.json()["id"])


def build_status(build_id: int) -> str:
    return str(Build.objects.get(pk=build_id).status)


def run_containers(agent: Agent) -> list[str]:
    """The build RUN containers running on the agent's engine."""
    return [c.name for c in agent.engine.list() if BUILD_LABEL in c.labels]


def second_tenant(a: LiveTenant, slug: str, member: str) -> LiveTenant:
    """Tenant ``slug`` on A's host, made by the same admin, with a developer ``member``."""
    wait_for(  # the agent registers its engine's base images just after the host
        lambda: Image.objects.filter(reference="busybox:latest", tenant=None).exists(), 30, "busybox"
    )
    tenant = tenants.create_tenant(a.admin, slug)
    user = UserFactory(username=member)
    tenants.add_member(a.admin, tenant, user.username, Role.DEVELOPER)
    return LiveTenant(a.agent, a.admin, tenant, user)


def terminal_echo(replica: Replica, user: Any) -> bytes:
    """Open a terminal on ``replica`` through the real socket and relay; what ``echo`` printed."""
    app = URLRouter(websocket_urlpatterns)

    async def session() -> bytes:
        communicator = WebsocketCommunicator(app, f"/ws/containers/{replica.pk}/exec/?rows=24&cols=80")
        communicator.scope["user"] = user
        communicator.scope["client"] = ("192.0.2.9", 40000)
        connected, _ = await communicator.connect()
        assert connected
        output = b""
        try:
            await communicator.send_to(bytes_data=b"echo fair-$((6*7))\n")
            while not re.search(rb"fair-42\r\n", output):
                frame = await communicator.receive_output(timeout=60)
                assert frame["type"] == "websocket.send", f"{frame} after {output!r}"
                output += frame.get("bytes") or b""
        finally:
            await communicator.disconnect()
        return output

    return async_to_sync(session)()


def test_another_tenants_logs_scale_and_terminal_answer_while_a_build_runs_forever(
    live_tenant: Callable[[str, str, str, str], LiveTenant],  # noqa: F811
    settings: Any,
    tmp_path: Any,
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    a = live_tenant("fair", "builder", "builder-dev", Role.DEVELOPER)
    b = second_tenant(a, "neighbour", "neighbour-dev")
    replica = b.deploy("web", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"])
    build_id = start_build(a.member, "builder", "forever:1", ENDLESS)
    wait_for(lambda: run_containers(a.agent), 60, f"A's RUN container to run\n{a.agent.log_tail()}")

    def a_still_building() -> None:
        assert build_status(build_id) == "running" and run_containers(a.agent), "A's build ended early"

    api = client(b.member)
    logs = api.get(f"/api/v1/tenants/neighbour/containers/{replica.pk}/logs/?tail=5")
    assert logs.status_code == 200, logs.content
    assert [line["text"] for line in logs.json()][-1] == "tick"
    a_still_building()

    r = api.post("/api/v1/tenants/neighbour/apps/web/scale/", {"replicas": 2}, format="json")
    assert r.status_code == 200, r.json()
    wait_for(
        lambda: Replica.objects.filter(app__tenant=b.tenant, state="running").count() == 2 or build_ended(),
        60,
        "B's second replica to run",
    )
    a_still_building()  # the scale-up was done while A's build still held its slot

    assert b"fair-42" in terminal_echo(replica, b.member)
    a_still_building()


def build_ended() -> bool:
    return Build.objects.filter(status__in=("failed", "succeeded")).exists()


def test_a_build_past_its_time_limit_is_killed_marked_failed_and_leaves_nothing(
    live_tenant: Callable[[str, str, str, str], LiveTenant],  # noqa: F811
    settings: Any,
    tmp_path: Any,
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    a = live_tenant("limit", "slowpoke", "slowpoke-dev", Role.DEVELOPER)
    admin = client(a.admin.user)
    bad = admin.patch("/api/v1/tenants/slowpoke/quota/", {"build_time_limit": 0}, format="json")
    assert bad.status_code == 400 and "build_time_limit" in bad.json()["error"]["message"], bad.json()
    assert Quota.objects.get(tenant=a.tenant).build_time_limit == 30 * 60  # unchanged, the default
    denied = client(a.member).patch(
        "/api/v1/tenants/slowpoke/quota/", {"build_time_limit": 9999}, format="json"
    )
    assert denied.status_code == 403  # tenants do not set their own limit
    r = admin.patch("/api/v1/tenants/slowpoke/quota/", {"build_time_limit": 3}, format="json")
    assert r.status_code == 200 and r.json()["build_time_limit"] == 3, r.json()

    build_id = start_build(a.member, "slowpoke", "forever:1", ENDLESS)
    wait_for(lambda: build_status(build_id) == "failed", 90, f"the build to be stopped\n{a.agent.log_tail()}")
    build = Build.objects.get(pk=build_id)
    assert "time limit of 3 seconds" in build.error, build.error
    assert build.output[-1]["stream"] == "error" and "time limit" in build.output[-1]["text"]
    assert any(line["text"] == "started" for line in build.output)  # it did run, then was killed
    body = client(a.member).get(f"/api/v1/tenants/slowpoke/builds/{build_id}/").json()
    assert (body["status"], body["image"]) == ("failed", None)
    engine = a.agent.engine
    wait_for(lambda: engine.list(all=True) == [], 30, "no container left")
    assert not [i for i in engine.images.list() if not i.repo_tags]  # no step image
    assert not list(engine.paths.tmp.glob("hpbuild-*"))  # no scratch directory
    assert not leaks(engine.paths.root, engine.instance)  # no mount, cgroup, conmon, crun state


def test_one_tenant_cannot_hold_every_build_slot(
    live_tenant: Callable[[str, str, str, str], LiveTenant],  # noqa: F811
    settings: Any,
    tmp_path: Any,
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.HOSTPANEL_BUILD_SLOTS = 2  # as the agent runs (default): one tenant gets one
    a = live_tenant("share", "hog", "hog-dev", Role.DEVELOPER)
    b = second_tenant(a, "modest", "modest-dev")
    hogs = [start_build(a.member, "hog", f"forever:{i}", ENDLESS) for i in range(3)]
    wait_for(lambda: run_containers(a.agent), 60, f"A's first RUN container\n{a.agent.log_tail()}")
    mine = start_build(b.member, "modest", "quick:1", "FROM busybox\nRUN echo modest > /m\n")
    wait_for(
        lambda: build_status(mine) in ("succeeded", "failed"), 90, f"B's build to run\n{a.agent.log_tail()}"
    )
    assert build_status(mine) == "succeeded", Build.objects.get(pk=mine).error
    states = [build_status(pk) for pk in hogs]
    assert states == ["running", "queued", "queued"], states  # A's first one still runs meanwhile
    listed = client(a.member).get("/api/v1/tenants/hog/builds/").json()
    waiting = [x for x in listed["results"] if x["status"] == "queued"]
    assert len(waiting) == 2 and all(x["dispatched_at"] is None for x in waiting), waiting
    assert len(run_containers(a.agent)) == 1  # the free slot stayed free for the other tenants
