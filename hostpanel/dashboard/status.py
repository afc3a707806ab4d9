"""What the dashboard shows about an app at a glance: running, deploying, crashed or stopped."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hostpanel.deployments.models import App, Replica

_CRASHED = {Replica.State.BACKOFF, Replica.State.FAILED, Replica.State.EXITED}
_ON_THE_WAY = {Replica.State.PENDING, Replica.State.STARTING, Replica.State.UPDATING}


@dataclass(frozen=True)
class AppStatus:
    """``label`` (running / deploying / crashed / stopped / host-down) and replicas up of wanted."""

    label: str
    up: int
    wanted: int
    placed: int
    starting: int
    held: int = 0  # containers stopped on request (their page's button): not wanted up meanwhile

    @property
    def settled(self) -> bool:
        """Nothing is on its way any more (a deploy's progress view stops polling)."""
        return self.label in ("running", "stopped", "crashed", "host-down")


def app_status(app: App, replicas: Iterable[Replica]) -> AppStatus:
    """Summarise the replicas of ``app`` (rows the agents keep up to date)."""
    rows = list(replicas)
    held = sum(1 for r in rows if r.stop_requested) if app.state == App.State.RUNNING else 0
    wanted = app.current_release.replicas if app.current_release and app.state == App.State.RUNNING else 0
    wanted = max(wanted - held, 0)
    up = sum(1 for r in rows if r.state == Replica.State.RUNNING and r.release_id == app.current_release_id)
    placed = sum(1 for r in rows if r.host_id is not None)
    starting = sum(1 for r in rows if r.state in _ON_THE_WAY and not r.stop_requested)
    if app.state == App.State.STOPPED:
        label = "stopped" if not any(r.state == Replica.State.RUNNING for r in rows) else "stopping"
    elif any(r.state in _CRASHED and not r.stop_requested for r in rows):
        label = "crashed"
    elif any(r.state == Replica.State.HOST_DOWN for r in rows):
        label = "host-down"  # pinned by its volumes to a host that is down: it waits for the host
    elif up < wanted or starting:
        label = "deploying"
    else:
        label = "running"
    return AppStatus(label, up, wanted, placed, starting, held)


def statuses(apps: Iterable[App]) -> list[tuple[App, AppStatus]]:
    """Each app with its status, reading all their replicas in one query."""
    apps = list(apps)
    by_app: dict[int, list[Replica]] = {a.pk: [] for a in apps}
    for replica in Replica.objects.filter(app__in=apps):
        by_app[replica.app_id].append(replica)
    return [(a, app_status(a, by_app[a.pk])) for a in apps]
