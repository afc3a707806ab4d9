"""Zero-downtime rolls: replace an app's replicas without a moment with nobody serving.

A change to an app with an ``http_port`` that needs new containers (a deploy, a
restart; a scale adds or removes replicas the same way) does not touch the
running replicas. It is a :class:`Rollout` that :func:`advance` drives, one step
at a time, from the host agents (after each reconcile, and from their heartbeat):

1. start one new replica (one replica of surge beyond the app's size: the
   tenant's quota allows it during a roll; a host must have room for it, else
   the change is refused with the reason);
2. wait until it is ready: its health check passes, or (without one) a TCP
   connect to ``http_port`` from the container's side succeeds (the probe pool);
3. switch: take one old replica out of the rotation and tell the edge
   (:func:`rotation.announce`); the new one is in it from now on;
4. let the old one drain for ``HOSTPANEL_ROLL_DRAIN_SECONDS`` (longer than the
   edge's 1 s refresh, so no new request reaches it after it stops);
5. stop it (its row goes; its agent removes the container), then the next step.

The app's current release changes only when every replica is new and ready. A
new replica that is not ready within ``HOSTPANEL_ROLL_DEADLINE_SECONDS`` (or that
the engine refuses) fails the roll: the new replicas that never served are
removed, the old ones keep serving, the release is marked failed with the reason
and the previous release stays current. If new replicas had already taken over
some of the traffic, a revert roll brings the previous release back the same way.
A newer change supersedes a roll in progress: its ready replicas count as old ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hostpanel.deployments import rotation
from hostpanel.deployments.models import App, Release, Replica, Rollout, container_name
from hostpanel.deployments.placement import place_replicas
from hostpanel.errors import NoCapacity
from hostpanel.hosts.services import reconcile_hosts

log = logging.getLogger(__name__)

ACTIVE = Rollout.State.ROLLING
# hosts' lifecycles whose replicas a roll replaces (hosts/lifecycle.py)
MOVING_OFF = ("draining", "evacuating")


def drain_seconds() -> float:
    """How long a replica taken out of the rotation keeps running (setting, above the edge's refresh)."""
    return float(settings.HOSTPANEL_ROLL_DRAIN_SECONDS)


def step_deadline_seconds(release: Release) -> float:
    """How long a new replica may take to become ready: the setting, plus one health-check interval
    (the first check runs one interval after the start)."""
    extra = 0.0
    if release.health_check:
        extra = float(release.health_check.get("interval", 30.0))
    return float(settings.HOSTPANEL_ROLL_DEADLINE_SECONDS) + extra


def should_roll(app: App, release: Release) -> bool:
    """Whether moving ``app`` (locked) to ``release`` is a roll: the app runs, serves HTTP in the
    new release, and has replicas placed already (a first start has nothing to keep serving)."""
    return (
        app.state == App.State.RUNNING
        and release.http_port is not None
        and Replica.objects.filter(app=app, host__isnull=False).exists()
    )


def active_rollout(app: App) -> Rollout | None:
    return Rollout.objects.filter(app=app, state=ACTIVE).select_related("release").first()


def begin(app: App, release: Release, kind: str, now: datetime | None = None) -> Rollout:
    """Start rolling ``app`` (locked, inside the caller's transaction) to ``release``.

    A roll in progress is superseded. Replicas of the same container shape as
    ``release`` are kept (moved to it, as for a scale); the others are replaced.
    Raises NoCapacity, with the reason, when no host has room for the surge replica
    (the caller's transaction rolls back: nothing changes).
    """
    now = now or timezone.now()
    previous = app.current_release
    for old in Rollout.objects.select_for_update().filter(app=app, state=ACTIVE):
        _finish(old, Rollout.State.SUPERSEDED, f"superseded by v{release.version}", now)
        _remove_unready(app, old)
    rollout = Rollout.objects.create(
        app=app,
        release=release,
        previous=previous,
        kind=kind,
        serving=rotation.serving_ids(app),
        step_deadline=now + timedelta(seconds=step_deadline_seconds(release)),
    )
    Release.objects.filter(pk=release.pk).update(status="rolling", status_message="")
    if kind != Rollout.Kind.RESTART:
        _adopt_same_shape(app, rollout)
    _step(app, rollout, now, strict=True)
    return rollout


def _adopt_same_shape(app: App, rollout: Rollout) -> None:
    """Keep the replicas whose containers already fit the target (a scale, a restart-policy change)."""
    target = rollout.release
    shape = target.container_shape()
    keep = [
        r  # the same containers, passed the same readiness gate (another http_port is checked anew),
        # not on a host being drained (they are what a drain replaces)
        for r in Replica.objects.filter(app=app, drain_until__isnull=True)
        .exclude(host__lifecycle__in=MOVING_OFF)
        .select_related("release")
        if r.release.container_shape() == shape and r.release.http_port == target.http_port
    ][: target.replicas]
    Replica.objects.filter(pk__in=[r.pk for r in keep]).update(rollout=rollout, release=rollout.release)


def _remove_unready(app: App, rollout: Rollout) -> None:
    """Delete the replicas ``rollout`` started that never served (their agents remove the containers)."""

    doomed = Replica.objects.filter(app=app, rollout=rollout, drain_until__isnull=True).exclude(
        pk__in=rotation.serving_ids(app)
    )
    hosts = set(doomed.values_list("host_id", flat=True))
    doomed.delete()
    reconcile_hosts(hosts)


def advance(app_id: int, now: datetime | None = None) -> bool:
    """Take the app's roll one step further, if it has one; True while it is still rolling.

    Idempotent and safe to call from several agents at once (the app row is locked).
    """
    with transaction.atomic():
        app = App.objects.select_for_update().filter(pk=app_id).select_related("tenant").first()
        if app is None:
            return False
        rollout = active_rollout(app)
        if rollout is None:
            return False
        _step(app, rollout, now or timezone.now(), strict=False)
        return rollout.state == ACTIVE


def advance_all(app_ids: list[int] | None = None) -> int:
    """Advance every rolling app (or those of ``app_ids``); returns how many still roll."""
    rolling = Rollout.objects.filter(state=ACTIVE)
    if app_ids is not None:
        rolling = rolling.filter(app_id__in=app_ids)
    still = 0
    for app_id in sorted(set(rolling.values_list("app_id", flat=True))):
        try:
            still += advance(app_id)
        except Exception:  # one app's trouble never stops the others' rolls
            log.exception("advancing the roll of app %s failed; retried on the next pass", app_id)
    return still


@dataclass
class _Sets:
    new: list[Replica]  # started (or kept) by this roll, not draining
    old: list[Replica]  # everything else still in (or waiting for) the rotation
    draining: list[Replica]
    serving: set[int]

    @property
    def ready_new(self) -> list[Replica]:
        return [r for r in self.new if r.pk in self.serving]

    @property
    def unready_new(self) -> list[Replica]:
        return [r for r in self.new if r.pk not in self.serving]


def _sets(app: App, rollout: Rollout) -> _Sets:
    replicas = list(Replica.objects.filter(app=app).select_related("release", "host").order_by("index"))
    return _Sets(
        new=[r for r in replicas if r.rollout_id == rollout.pk and r.drain_until is None],
        old=[r for r in replicas if r.rollout_id != rollout.pk and r.drain_until is None],
        draining=[r for r in replicas if r.drain_until is not None],
        serving=set(rotation.serving_ids(app)),
    )


def _step(app: App, rollout: Rollout, now: datetime, *, strict: bool) -> None:
    """One pass of the roll (see the module's steps); ``strict`` raises NoCapacity instead of failing."""

    touched: set[int | None] = set()
    for gone in Replica.objects.filter(app=app, drain_until__lte=now):
        touched.add(gone.host_id)  # drained: stop it (the agent removes its container)
        gone.delete()
    sets = _sets(app, rollout)
    target = rollout.release.replicas
    refused = next((r for r in sets.unready_new if r.state == Replica.State.FAILED), None)
    late = sets.unready_new and rollout.step_deadline is not None and now > rollout.step_deadline
    if refused is not None or late:
        reconcile_hosts(touched)
        _fail(app, rollout, _why_not_ready(refused or sets.unready_new[0], rollout), now)
        return
    # switch: as many old replicas stay as the ready new ones do not yet replace
    keep_old = max(0, target - len(sets.ready_new))
    retire = sorted(sets.old, key=lambda r: (r.pk in sets.serving, -r.index))[
        : max(0, len(sets.old) - keep_old)
    ]
    for replica in retire:
        replica.drain_until = now + timedelta(seconds=drain_seconds())
        Replica.objects.filter(pk=replica.pk).update(drain_until=replica.drain_until, updated_at=now)
        sets.old.remove(replica)
        sets.draining.append(replica)
    # start: one replica of surge beyond the larger of the app's sizes
    occupancy = len(sets.new) + len(sets.old) + len(sets.draining)
    start = min(target - len(sets.new), target + 1 - occupancy)
    if start > 0:
        try:
            started = _start_replicas(app, rollout, start)
        except NoCapacity as exc:
            if strict:
                raise NoCapacity(
                    f"a rolling deploy starts a new replica next to the running ones before it stops one, "
                    f"and there is no room for it: {exc}; free some room on the hosts or stop the app "
                    "first (then it restarts without a roll)",
                    exc.details,
                ) from exc
            _fail(app, rollout, f"no room for the next new replica: {exc}", now)
            return
        touched |= {r.host_id for r in started}
        sets.new += started
        rollout.step_deadline = now + timedelta(seconds=step_deadline_seconds(rollout.release))
    reconcile_hosts(touched)
    _publish_if_changed(app, rollout)
    if len(sets.new) == target and not sets.unready_new and not sets.old and not sets.draining:
        _succeed(app, rollout, now)
        return
    rollout.phase = _phase(sets, target)
    rollout.save(update_fields=["phase", "step_deadline", "serving", "updated_at"])


def _start_replicas(app: App, rollout: Rollout, count: int) -> list[Replica]:
    """``count`` new replicas of the roll's release, placed (NoCapacity, with why, if one fits nowhere)."""

    used = set(Replica.objects.filter(app=app).values_list("index", flat=True))
    free = (i for i in range(len(used) + count + 1) if i not in used)
    fresh = []
    for _ in range(count):
        index = next(free)
        fresh.append(
            Replica.objects.create(
                app=app,
                index=index,
                release=rollout.release,
                rollout=rollout,
                restart_generation=app.restart_generation,
                container_name=container_name(app, index),
            )
        )
    return place_replicas(app, fresh, strict=True)


def _phase(sets: _Sets, target: int) -> str:
    ready = len(sets.ready_new)
    words = [f"{ready} of {target} new replica(s) ready"]
    if sets.unready_new:
        waiting = ", ".join(str(r.index) for r in sets.unready_new)
        words.append(f"waiting for replica {waiting} to become ready")
    if sets.draining:
        words.append(f"draining {len(sets.draining)} old replica(s)")
    if sets.old:
        words.append(f"{len(sets.old)} old replica(s) serving")
    return "; ".join(words)


def _why_not_ready(replica: Replica, rollout: Rollout) -> str:
    release = rollout.release
    if replica.state == Replica.State.FAILED:
        return f"replica {replica.index} could not start: {replica.message}"
    if release.health_check:
        gate = "its health check did not pass"
    else:
        gate = f"nothing accepted connections on http_port {release.http_port} inside the container"
    seconds = step_deadline_seconds(release)
    state = f" (last state: {replica.state}{', ' + replica.message if replica.message else ''})"
    return f"replica {replica.index} was not ready within {seconds:g}s: {gate}{state}"


def _publish_if_changed(app: App, rollout: Rollout) -> None:
    serving = rotation.serving_ids(app)
    if serving != rollout.serving:
        rollout.serving = serving
        rotation.announce(app.pk)


def _finish(rollout: Rollout, state: str, message: str, now: datetime) -> None:
    rollout.state, rollout.message, rollout.finished_at = state, message, now
    rollout.phase = {"succeeded": "done", "superseded": "superseded"}.get(state, "failed")
    rollout.save(update_fields=["state", "message", "finished_at", "phase", "serving", "updated_at"])
    if state != Rollout.State.SUCCEEDED:
        status = "failed" if state == Rollout.State.FAILED else "superseded"
        Release.objects.filter(pk=rollout.release_id, status="rolling").update(
            status=status, status_message=message
        )


def _succeed(app: App, rollout: Rollout, now: datetime) -> None:
    release = rollout.release
    app.current_release = release
    app.save(update_fields=["current_release", "updated_at"])
    Release.objects.filter(pk=release.pk).update(status="live", status_message="")
    _finish(rollout, Rollout.State.SUCCEEDED, "", now)
    log.info("app %s: rolled to v%s", app, release.version)


def _fail(app: App, rollout: Rollout, reason: str, now: datetime) -> None:
    """The roll failed: remove what never served, keep the old replicas, keep the current release."""
    log.warning("app %s: the roll to v%s failed: %s", app, rollout.release.version, reason)
    _remove_unready(app, rollout)
    _publish_if_changed(app, rollout)
    _finish(rollout, Rollout.State.FAILED, reason, now)
    took_over = Replica.objects.filter(app=app, rollout=rollout, drain_until__isnull=True).exists()
    current = app.current_release
    if took_over and current is not None and current.pk != rollout.release_id:
        revert = Rollout.objects.create(
            app=app,
            release=current,
            previous=rollout.release,
            kind=Rollout.Kind.REVERT,
            serving=rollout.serving,
            step_deadline=now + timedelta(seconds=step_deadline_seconds(current)),
        )
        _adopt_same_shape(app, revert)
        _step(app, revert, now, strict=False)


def abandon(app: App, reason: str, now: datetime | None = None) -> None:
    """Stop the app's roll where it is (a change that does not roll, a stop): its unready new
    replicas and the draining ones go; the caller then sets the replicas straight."""
    now = now or timezone.now()
    for rolling in Rollout.objects.select_for_update().filter(app=app, state=ACTIVE):
        _remove_unready(app, rolling)
        _finish(rolling, Rollout.State.SUPERSEDED, reason, now)
    Replica.objects.filter(app=app, drain_until__isnull=False).delete()
