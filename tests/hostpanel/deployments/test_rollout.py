"""The rolling-deploy state machine (hostpanel/deployments/rollout.py), step by step.

The agent's part (starting containers, the readiness probe) is played here by
writing the replica rows as an agent would: running and ready. The real agents,
containers and proxy are in tests/hostpanel/e2e/test_e2e_roll.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.deployments import rollout, rotation
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica, Rollout
from hostpanel.errors import NoCapacity
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant

pytestmark = pytest.mark.django_db

HTTP = {"image": "busybox:latest", "command": ["httpd", "-f", "-p", "8080"], "http_port": 8080}


@pytest.fixture
def announced() -> Iterator[list[int]]:
    """The app ids announced to the edge (rotation_changed), in order."""
    seen: list[int] = []

    def listener(sender: Any, app_id: int, **kwargs: Any) -> None:
        seen.append(app_id)

    rotation.rotation_changed.connect(listener)
    yield seen
    rotation.rotation_changed.disconnect(listener)


@pytest.fixture(autouse=True)
def short_roll(settings: Any) -> None:
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS = 5
    settings.HOSTPANEL_ROLL_DEADLINE_SECONDS = 60


def serve(*replicas: Replica) -> None:
    """What the agent writes once a replica's container runs and passed its readiness gate."""
    Replica.objects.filter(pk__in=[r.pk for r in replicas]).update(state=Replica.State.RUNNING, ready=True)


def rows(app: App) -> list[Replica]:
    return list(Replica.objects.filter(app=app).select_related("release").order_by("index"))


def fresh(app: App) -> App:
    return App.objects.select_related("current_release", "tenant").get(pk=app.pk)


def running_app(make_app: Any, tenant: Tenant, replicas: int = 1, **spec: Any) -> App:
    app = make_app(tenant, replicas=replicas, **(HTTP | spec))
    serve(*rows(app))
    return fresh(app)


def advance(app: App, now: datetime) -> bool:
    return rollout.advance(app.pk, now=now)


def test_deploy_starts_one_new_replica_and_keeps_the_old_one_serving(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    (old,) = rows(app)
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, env={"V": "2"})
    app = fresh(app)
    assert app.current_release.version == 1  # the old release stays current until the roll ends
    assert v2.__class__.objects.get(pk=v2.pk).status == "rolling"
    old_row, new_row = rows(app)
    assert old_row.pk == old.pk and old_row.release.version == 1 and old_row.drain_until is None
    assert new_row.release.version == 2 and new_row.host is not None and new_row.index == 1
    assert [r.pk for r in rotation.serving_replicas(app)] == [old.pk]  # new: not ready yet


def test_a_roll_switches_drains_stops_and_makes_the_release_current(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, announced: list[int], on_commit: Any
) -> None:
    app = running_app(make_app, tenant, replicas=2)
    olds = rows(app)
    now = timezone.now()
    with on_commit():
        deployments.deploy(admin_actor, app, env={"V": "2"})
    for _ in range(3):  # nothing moves while the new replica is not ready
        with on_commit():
            assert advance(app, now)
    assert len(rows(app)) == 3 and announced == []
    (first_new,) = [r for r in rows(app) if r.release.version == 2]
    serve(first_new)
    with on_commit():
        assert advance(app, now)
    draining = [r for r in rows(app) if r.drain_until is not None]
    assert len(draining) == 1 and draining[0].pk in {o.pk for o in olds}
    assert draining[0].drain_until == now + timedelta(seconds=5)
    serving = {r.pk for r in rotation.serving_replicas(app)}
    assert serving == {first_new.pk} | {o.pk for o in olds} - {draining[0].pk}
    assert announced == [app.pk]  # the edge hears of the switch once
    # surge of one: no second new replica while the old one drains
    assert len(rows(app)) == 3
    later = now + timedelta(seconds=5)
    with on_commit():
        assert advance(app, later)  # drained: stopped, and the next new replica starts
    assert draining[0].pk not in {r.pk for r in rows(app)}
    (second_new,) = [r for r in rows(app) if r.release.version == 2 and r.pk != first_new.pk]
    assert fresh(app).current_release.version == 1
    serve(second_new)
    with on_commit():
        advance(app, later)
    with on_commit():
        assert not advance(app, later + timedelta(seconds=5))
    app = fresh(app)
    assert app.current_release.version == 2 and app.current_release.status == "live"
    assert [r.release.version for r in rows(app)] == [2, 2]
    assert {r.pk for r in rotation.serving_replicas(app)} == {first_new.pk, second_new.pk}
    done = Rollout.objects.get(app=app, release__version=2)
    assert done.state == "succeeded" and done.phase == "done"
    assert announced == [app.pk] * 2  # one per switch


def test_never_ready_fails_keeps_the_old_release_current_and_serving(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    (old,) = rows(app)
    now = timezone.now()
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, env={"V": "2"})
    with on_commit():
        assert advance(app, now + timedelta(seconds=59))
    with on_commit():
        assert not advance(app, now + timedelta(seconds=61))
    app = fresh(app)
    assert app.current_release.version == 1
    assert [r.pk for r in rows(app)] == [old.pk]  # the new replica is gone
    assert [r.pk for r in rotation.serving_replicas(app)] == [old.pk]
    v2.refresh_from_db()
    assert v2.status == "failed"
    assert "not ready within 60s" in v2.status_message and "http_port 8080" in v2.status_message
    assert Rollout.objects.get(release=v2).state == "failed"


def test_a_replica_the_engine_refuses_fails_the_roll_at_once(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, env={"V": "2"})
    Replica.objects.filter(release=v2).update(state=Replica.State.FAILED, message="no such image")
    with on_commit():
        assert not advance(app, timezone.now())
    v2.refresh_from_db()
    assert v2.status == "failed" and "no such image" in v2.status_message
    assert fresh(app).current_release.version == 1


def test_no_room_for_the_surge_replica_refuses_the_deploy_and_changes_nothing(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    Host.objects.filter(pk=host.pk).update(cpu_millis=300)  # room for one replica of 250 millicores
    app = running_app(make_app, tenant)
    with pytest.raises(NoCapacity) as caught:
        deployments.deploy(admin_actor, app, env={"V": "2"})
    assert "rolling deploy starts a new replica next to the running ones" in str(caught.value)
    app = fresh(app)
    assert app.current_release.version == 1 and app.releases.count() == 1
    assert len(rows(app)) == 1 and not Rollout.objects.exists()


def test_scale_down_drains_the_replicas_it_stops(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant, replicas=3)
    with on_commit():
        deployments.scale(admin_actor, app, 1)
    now = timezone.now()  # the extra replicas drain from the scale on
    with on_commit():
        advance(app, now)
    kept = [r for r in rows(app) if r.drain_until is None]
    assert len(kept) == 1 and kept[0].index == 0  # same containers: kept, not replaced
    assert len(rotation.serving_replicas(app)) == 1
    assert fresh(app).current_release.version == 1
    with on_commit():
        assert not advance(app, now + timedelta(seconds=5))
    assert [r.index for r in rows(app)] == [0] and fresh(app).current_release.replicas == 1


def test_scale_up_starts_the_missing_replicas_at_once(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    with on_commit():
        deployments.scale(admin_actor, app, 3)
    assert len(rows(app)) == 3
    serve(*rows(app))
    with on_commit():
        assert not advance(app, timezone.now())
    assert fresh(app).current_release.replicas == 3


def test_restart_rolls_new_containers_of_the_same_release(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    (old,) = rows(app)
    now = timezone.now()
    with on_commit():
        deployments.restart(admin_actor, app)
    assert fresh(app).restart_generation == 0  # no restart in place
    new = next(r for r in rows(app) if r.pk != old.pk)
    assert new.release_id == old.release_id
    serve(new)
    with on_commit():
        advance(app, now)
    with on_commit():
        assert not advance(app, now + timedelta(seconds=5))
    assert [r.pk for r in rows(app)] == [new.pk]


def test_a_newer_deploy_supersedes_a_roll_in_progress(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, env={"V": "2"})
    with on_commit():
        v3 = deployments.deploy(admin_actor, fresh(app), env={"V": "3"})
    v2.refresh_from_db()
    assert v2.status == "superseded"
    assert sorted(r.release.version for r in rows(app)) == [1, 3]  # v2's unready replica is gone
    assert Rollout.objects.get(release=v3).state == "rolling"


def test_a_roll_that_fails_half_way_reverts_to_the_previous_release(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant, replicas=2)
    now = timezone.now()
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, env={"V": "2"})
    serve(*[r for r in rows(app) if r.release_id == v2.pk])
    with on_commit():
        advance(app, now)  # the first new replica serves, one old one drains
    with on_commit():
        advance(app, now + timedelta(seconds=5))  # the second new replica starts...
    with on_commit():
        advance(app, now + timedelta(seconds=200))  # ...and never becomes ready
    v2.refresh_from_db()
    assert v2.status == "failed"
    revert = Rollout.objects.get(app=app, state="rolling")
    assert revert.kind == "revert" and revert.release.version == 1
    for _ in range(6):  # the agent's part: whatever the revert starts becomes ready
        serve(*[r for r in rows(app) if r.release.version == 1])
        with on_commit():
            advance(app, now + timedelta(seconds=300 + 10 * _))
    app = fresh(app)
    assert app.current_release.version == 1
    assert [r.release.version for r in rows(app)] == [1, 1]
    assert Rollout.objects.get(pk=revert.pk).state == "succeeded"


def test_an_app_without_http_port_changes_without_a_roll(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = make_app(tenant)
    serve(*rows(app))
    with on_commit():
        deployments.deploy(admin_actor, fresh(app), env={"V": "2"})
    assert fresh(app).current_release.version == 2 and not Rollout.objects.exists()
    assert [r.release.version for r in rows(app)] == [2]


def test_stopping_the_app_ends_its_roll(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    app = running_app(make_app, tenant)
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, env={"V": "2"})
        deployments.set_state(admin_actor, fresh(app), App.State.STOPPED)
    assert Rollout.objects.get(release=v2).state == "superseded"
    assert [r.release.version for r in rows(app)] == [1]


def test_moving_http_port_to_another_published_port_starts_replicas_that_must_pass_the_gate(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any
) -> None:
    ports = [{"container_port": 8080, "protocol": "tcp"}, {"container_port": 9090, "protocol": "tcp"}]
    app = running_app(make_app, tenant, ports=ports)
    (old,) = rows(app)
    with on_commit():
        v2 = deployments.deploy(admin_actor, app, http_port=9090)  # same containers, another port
    assert [r.pk for r in rotation.serving_replicas(fresh(app))] == [old.pk]
    new = [r for r in rows(app) if r.release_id == v2.pk]
    assert len(new) == 1 and new[0].pk != old.pk and not new[0].ready


def test_the_periodic_host_checks_take_a_roll_on_without_any_report(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any, on_commit: Any, announced: list[int]
) -> None:
    """Host agents hold no database: a roll goes on at their reports and at the panel's periodic
    host checks (``manage.py watchhosts``: hosts.signals.checked), here with no report at all."""
    from hostpanel.hosts import services as host_services

    app = running_app(make_app, tenant)
    with on_commit():
        deployments.deploy(admin_actor, app, env={"V": "2"})
    serve(*[r for r in rows(app) if r.release.version == 2])  # ready; no report advanced the roll
    assert announced == []
    with on_commit():
        host_services.watch_hosts()
    assert announced == [app.pk]  # switched: the new replica serves
    assert {r.release.version for r in rotation.serving_replicas(fresh(app))} == {2}
