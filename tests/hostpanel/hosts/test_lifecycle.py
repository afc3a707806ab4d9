"""The host lifecycle (issue 15): the state machine, cordon, dead hosts, fencing, drain, evacuate.

The agents' part is played by writing replica rows as an agent would; the real agents and
containers are in tests/hostpanel/e2e/test_e2e_host_lifecycle.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.agent import host_engine
from hostpanel.deployments.models import App, Replica, Rollout
from hostpanel.errors import Conflict
from hostpanel.hosts import fencing, lifecycle, services
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import HostFactory, MembershipFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine
from tests.hostpanel.hosts.test_enrollment import broker, post_register, public_pem, redis_admin_url

__all__ = ["broker", "redis_admin_url"]  # the enrollment tests' Redis fixtures, used here

L = Host.Lifecycle
HTTP = {"image": "busybox:latest", "command": ["httpd", "-f", "-p", "8080"], "http_port": 8080}


# ---- the state machine (pure) -----------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "action", "target"),
    [
        (L.ACTIVE, "cordon", L.CORDONED),
        (L.CORDONED, "cordon", L.CORDONED),
        (L.CORDONED, "uncordon", L.ACTIVE),
        (L.DRAINED, "uncordon", L.ACTIVE),
        (L.EVACUATED, "uncordon", L.ACTIVE),
        (L.ACTIVE, "drain", L.DRAINING),
        (L.CORDONED, "drain", L.DRAINING),
        (L.DRAINED, "drain", L.DRAINING),
        (L.DRAINING, "evacuate", L.EVACUATING),
        (L.DRAINED, "evacuate", L.EVACUATING),
        (L.ACTIVE, "evacuate", L.EVACUATING),
    ],
)
def test_transitions(current: str, action: str, target: str) -> None:
    assert lifecycle.next_lifecycle(current, action) == target


@pytest.mark.parametrize(
    ("current", "action"),
    [(L.EVACUATED, "cordon"), (L.EVACUATED, "drain"), (L.EVACUATING, "drain"), (L.DRAINING, "cordon")],
)
def test_refused_transitions_say_what_to_do(current: str, action: str) -> None:
    with pytest.raises(Conflict, match=f"cannot {action} a host that is {current}"):
        lifecycle.next_lifecycle(current, action)


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of cordon, uncordon, drain, evacuate"):
        lifecycle.next_lifecycle(L.ACTIVE, "reboot")


def test_moves_settle_once_nothing_movable_is_left() -> None:
    assert lifecycle.settled(L.DRAINING, 1) == L.DRAINING
    assert lifecycle.settled(L.DRAINING, 0) == L.DRAINED
    assert lifecycle.settled(L.EVACUATING, 0) == L.EVACUATED
    assert lifecycle.settled(L.CORDONED, 0) == L.CORDONED
    assert [lc for lc in L.values if lifecycle.schedulable(lc)] == [L.ACTIVE]
    assert [lc for lc in L.values if lifecycle.out_of_service(lc)] == [L.EVACUATING, L.EVACUATED]


# ---- the fencing rule (pure) ------------------------------------------------------------
def test_fencing_keeps_only_current_placements() -> None:
    placed = {"1": 3, "2": 1}
    # 1 runs its current generation; 2 was placed here anew (generation 1, the container is of 0);
    # 3 was moved to another host (not placed here at all)
    assert fencing.fenced(placed, {"1": 3, "2": 0, "3": 7}) == ["2", "3"]
    assert fencing.fenced(placed, {}) == []
    assert fencing.label_generation({fencing.LABEL_GENERATION: "4"}) == 4
    assert fencing.label_generation({}) == 0  # made before generations: generation 0
    assert not fencing.is_current({"1": 0}, "1", fencing.label_generation({fencing.LABEL_GENERATION: "x"}))


# ---- with the database -------------------------------------------------------------------
def _stale(host: Host, settings: Any) -> None:
    Host.objects.filter(pk=host.pk).update(
        last_heartbeat=timezone.now() - timedelta(seconds=settings.HOSTPANEL_HOST_GRACE_SECONDS + 5)
    )


def _serve(app: App) -> None:
    Replica.objects.filter(app=app).update(state=Replica.State.RUNNING, ready=True)


@pytest.mark.django_db
def test_a_cordoned_host_takes_no_new_replicas_and_keeps_its_own(
    tenant: Tenant, make_app: Any, host: Host, admin_actor: Any
) -> None:
    web = make_app(tenant, "web")
    services.change_lifecycle(admin_actor, host, "cordon")
    assert Replica.objects.get(app=web).host_id == host.pk  # what runs stays
    other = HostFactory(name="h2")
    worker = make_app(tenant, "worker", replicas=2)
    assert {r.host_id for r in Replica.objects.filter(app=worker)} == {other.pk}
    services.change_lifecycle(admin_actor, Host.objects.get(pk=other.pk), "cordon")
    from hostpanel.errors import NoCapacity

    with pytest.raises(NoCapacity, match="no host is up and active"):
        make_app(tenant, "late")
    services.change_lifecycle(admin_actor, host, "uncordon")
    assert Host.objects.get(pk=host.pk).lifecycle == L.ACTIVE
    make_app(tenant, "late")


@pytest.mark.django_db
def test_a_dead_host_moves_its_stateless_replicas_and_pins_those_with_volumes(
    tenant: Tenant, make_app: Any, host: Host, settings: Any, sent_reconciles: list[Any], on_commit: Any
) -> None:
    Volume.objects.create(tenant=tenant, name="data", size_bytes=2**30)
    web = make_app(tenant, "web", replicas=2)
    db = make_app(tenant, "db", volumes=[{"name": "data", "path": "/data"}])
    other = HostFactory(name="h2")
    generations = dict(Replica.objects.filter(app=web).values_list("pk", "generation"))
    _stale(host, settings)
    assert [h.name for h in services.mark_stale_hosts()] == ["h1"]
    moved = list(Replica.objects.filter(app=web))
    assert {r.host_id for r in moved} == {other.pk}
    assert all(r.generation == generations[r.pk] + 1 for r in moved)  # placed anew: fenced on h1
    pinned = Replica.objects.get(app=db)
    assert pinned.host_id == host.pk and pinned.state == Replica.State.HOST_DOWN
    assert "mounts volumes, whose data lives on that host's disk" in pinned.message
    from hostpanel.dashboard.status import statuses

    ((_, status),) = statuses(App.objects.filter(pk=db.pk).select_related("current_release"))
    assert status.label == "host-down" and status.settled  # shown so, and no progress view polls on
    # it comes back: its pinned replica is reconciled again, its moved ones are fenced
    sent_reconciles.clear()
    old = {str(r.pk): generations[r.pk] for r in moved} | {str(pinned.pk): pinned.generation}
    with on_commit():
        assert services.heartbeat(host.pk, old) == sorted(str(r.pk) for r in moved)
    assert Host.objects.get(pk=host.pk).state == Host.State.UP
    assert (host.pk, host.queue) in sent_reconciles


@pytest.mark.django_db
def test_an_evacuated_host_is_not_mourned(
    tenant: Tenant, make_app: Any, host: Host, settings: Any, admin_actor: Any
) -> None:
    Volume.objects.create(tenant=tenant, name="data", size_bytes=2**30)
    db = make_app(tenant, "db", volumes=[{"name": "data", "path": "/data"}])
    assert services.change_lifecycle(admin_actor, host, "evacuate").lifecycle == L.EVACUATED
    assert Replica.objects.get(app=db).host_id == host.pk  # pinned: it stays, stopped by its agent
    _stale(host, settings)
    services.mark_stale_hosts()
    assert Replica.objects.get(app=db).state != Replica.State.HOST_DOWN


@pytest.mark.django_db
def test_the_agent_removes_containers_of_an_old_generation_and_stops_pinned_ones_when_evacuated(
    tenant: Tenant, make_app: Any, host: Host, admin_actor: Any, agents: EnrolledAgents
) -> None:
    engine = FakeEngine()
    Volume.objects.create(tenant=tenant, name="data", size_bytes=2**30)
    web = make_app(tenant, "web")
    db = make_app(tenant, "db", volumes=[{"name": "data", "path": "/data"}])
    agents.reconcile(engine, host)
    (container,) = [c for c in engine.list(all=True) if c.name == "acme-web-0"]
    replica = Replica.objects.get(app=web)
    assert container.labels[fencing.LABEL_GENERATION] == str(replica.generation)
    # placed anew on the same host (moved away and back while it was cut off): a new container
    Replica.objects.filter(pk=replica.pk).update(generation=replica.generation + 1)
    report = agents.reconcile(engine, host)
    assert report.removed == ["acme-web-0"] and report.started == ["acme-web-0"]
    services.change_lifecycle(admin_actor, host, "evacuate")
    host.refresh_from_db()
    report = agents.reconcile(engine, host)
    assert report.stopped == ["acme-db-0"]
    assert Replica.objects.get(app=db).message == "its host is evacuated (out of service)"


@pytest.mark.django_db
def test_the_agents_heartbeat_removes_fenced_containers_at_once(
    tenant: Tenant, make_app: Any, host: Host, settings: Any, agents: EnrolledAgents
) -> None:
    engine = FakeEngine()
    web = make_app(tenant, "web")
    agents.reconcile(engine, host)
    HostFactory(name="h2")
    _stale(host, settings)
    services.mark_stale_hosts()  # it was cut off: web moved to h2
    assert Replica.objects.get(app=web).host.name == "h2"
    assert host_engine.fence(engine, agents.client(host)) == ["acme-web-0"]  # type: ignore[arg-type]
    assert engine.list(all=True) == []


@pytest.mark.django_db
def test_drain_rolls_a_web_app_ready_elsewhere_before_the_old_replica_stops(
    tenant: Tenant, make_app: Any, host: Host, admin_actor: Any, settings: Any
) -> None:
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS = 5
    web = make_app(tenant, "web", **HTTP)
    _serve(web)
    other = HostFactory(name="h2")
    assert services.change_lifecycle(admin_actor, host, "drain").lifecycle == L.DRAINING
    roll = Rollout.objects.get(app=web, state=Rollout.State.ROLLING)
    assert roll.kind == Rollout.Kind.DRAIN
    old, new = Replica.objects.filter(app=web).order_by("index")
    assert (old.host_id, new.host_id) == (host.pk, other.pk)
    assert services.settle_lifecycles() == []  # the old one serves until the new one is ready
    assert Replica.objects.get(pk=old.pk).drain_until is None
    Replica.objects.filter(pk=new.pk).update(state=Replica.State.RUNNING, ready=True)
    from hostpanel.deployments import rollout

    now = timezone.now()
    rollout.advance(web.pk, now=now)
    assert Replica.objects.get(pk=old.pk).drain_until is not None  # out of the rotation, draining
    rollout.advance(web.pk, now=now + timedelta(seconds=6))
    assert list(Replica.objects.filter(app=web).values_list("host_id", flat=True)) == [other.pk]
    assert [h.name for h in services.settle_lifecycles()] == ["h1"]
    assert Host.objects.get(pk=host.pk).lifecycle == L.DRAINED
    assert Rollout.objects.get(pk=roll.pk).state == Rollout.State.SUCCEEDED


@pytest.mark.django_db
def test_lifecycle_actions_are_audited(host: Host, admin_actor: Any) -> None:
    from hostpanel.audit.models import AuditLog

    services.change_lifecycle(admin_actor, host, "cordon")
    services.change_lifecycle(admin_actor, host, "uncordon")
    assert list(AuditLog.objects.order_by("pk").values_list("action", flat=True)) == [
        "host.cordon",
        "host.uncordon",
    ]


# ---- the API: staff only -----------------------------------------------------------------
@pytest.mark.django_db
def test_the_api_changes_and_shows_the_lifecycle_for_staff_only(
    api: Any, admin_user: Any, tenant: Tenant, host: Host
) -> None:
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    for action in lifecycle.ACTIONS:
        assert api(owner).post(f"/api/v1/hosts/{host.pk}/{action}/").status_code == 403
        assert api(None).post(f"/api/v1/hosts/{host.pk}/{action}/").status_code in (401, 403)
    assert api(owner).get(f"/api/v1/hosts/{host.pk}/").status_code == 403
    assert Host.objects.get(pk=host.pk).lifecycle == L.ACTIVE  # nothing changed
    staff = api(admin_user)
    r = staff.post(f"/api/v1/hosts/{host.pk}/cordon/")
    assert r.status_code == 200 and r.json()["lifecycle"] == "cordoned"
    assert staff.get(f"/api/v1/hosts/{host.pk}/").json()["lifecycle"] == "cordoned"
    assert staff.post(f"/api/v1/hosts/{host.pk}/evacuate/").json()["lifecycle"] == "evacuated"
    r = staff.post(f"/api/v1/hosts/{host.pk}/drain/")
    assert r.status_code == 409 and "uncordon it first" in r.json()["error"]["message"]
    assert staff.post("/api/v1/hosts/999999/cordon/").status_code == 404
    # state and lifecycle are not written by PATCH (heartbeats and the actions do)
    r = staff.patch(f"/api/v1/hosts/{host.pk}/", {"lifecycle": "active"}, format="json")
    assert r.status_code == 400 and Host.objects.get(pk=host.pk).lifecycle == L.EVACUATED


# ---- /staff/: staff only -----------------------------------------------------------------
@pytest.mark.django_db
def test_the_staff_page_shows_the_lifecycle_and_its_buttons_act_for_staff_only(
    admin_user: Any, tenant: Tenant, host: Host
) -> None:
    from django.test import Client

    def signed_in(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    owner = signed_in(MembershipFactory(tenant=tenant, role=Role.OWNER).user)
    assert owner.get("/staff/").status_code == 403
    assert owner.post(f"/staff/hosts/{host.name}/evacuate/").status_code == 403
    assert Client().post(f"/staff/hosts/{host.name}/evacuate/").status_code == 302  # to the login page
    assert Host.objects.get(pk=host.pk).lifecycle == L.ACTIVE
    staff = signed_in(admin_user)
    page = staff.get("/staff/").content.decode()
    assert 'data-lifecycle="active"' in page
    assert [a for a in ("cordon", "uncordon", "drain", "evacuate") if f'data-action="{a}"' in page] == [
        "cordon",
        "drain",
        "evacuate",
    ]
    assert staff.get(f"/staff/hosts/{host.name}/cordon/").status_code == 405
    assert staff.post(f"/staff/hosts/{host.name}/cordon/").status_code == 302
    assert Host.objects.get(pk=host.pk).lifecycle == L.CORDONED
    page = staff.get("/staff/").content.decode()
    assert 'data-lifecycle="cordoned"' in page and 'data-action="uncordon"' in page
    assert staff.post("/staff/hosts/nowhere/cordon/").status_code == 404
    assert staff.post(f"/staff/hosts/{host.name}/reboot/").status_code == 404


# ---- the panel's own periodic check --------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_watchhosts_declares_a_dead_host_and_moves_its_replicas(
    tenant: Tenant, make_app: Any, host: Host, settings: Any
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    web = make_app(tenant, "web")
    other = HostFactory(name="h2")
    _stale(host, settings)
    out = StringIO()
    call_command("watchhosts", "--once", stdout=out)
    assert out.getvalue() == "host h1 is down: its stateless replicas moved\n"
    assert Replica.objects.get(app=web).host_id == other.pk
    with pytest.raises(CommandError, match="--interval: give a number of seconds above 0"):
        call_command("watchhosts", "--interval", "0")


# ---- an enrolled agent's heartbeat (the internal API) carries what it runs -------------------
@pytest.mark.django_db
def test_the_internal_heartbeat_answers_what_to_fence(
    broker: Any, tenant: Tenant, make_app: Any, settings: Any
) -> None:
    from rest_framework.test import APIClient

    from hostpanel.hosts import enrollment

    creds = post_register(enrollment.add_host(None, "node-f").token, public_pem()).json()
    node = Host.objects.get(name="node-f")
    Host.objects.exclude(pk=node.pk).delete()
    Host.objects.filter(pk=node.pk).update(cpu_millis=4000, memory_bytes=8 * 2**30, state=Host.State.UP)
    web = make_app(tenant, "web")
    replica = Replica.objects.get(app=web)
    assert replica.host_id == node.pk
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {creds['api_token']}")
    current = {str(replica.pk): replica.generation}
    beat = client.post("/internal/v1/heartbeat", {"running": current}, format="json")
    assert beat.status_code == 200 and beat.json()["fence"] == []
    stale = {str(replica.pk): replica.generation - 1, "999999": 1}
    assert client.post("/internal/v1/heartbeat", {"running": stale}, format="json").json()["fence"] == [
        str(replica.pk),
        "999999",
    ]
    for bad in ({"running": {"1": "x"}}, {"running": [1]}, {"running": {}, "state": "down"}):
        answer = client.post("/internal/v1/heartbeat", bad, format="json")
        assert answer.status_code == 400 and "replica id: generation" in json.dumps(answer.json()), bad
    assert client.post("/internal/v1/heartbeat").json()["fence"] == []
