"""When a container that stopped by itself is started again: its restart policy and back-off.

One decision for both reconciles, as a pure function of what the panel records of the replica
(``restart_count``, ``crash_streak``, ``next_restart_at``) and the container: the reconcile with
the database (reconcile.py) reads and writes those on the replica's row; the one without
(remote.py) gets them in its document and reports the new values back. Restart number ``n + 1``
waits :func:`backoff_delay` of the crash streak ``n`` after the container finished; a container
that ran ``HOSTPANEL_RESTART_BACKOFF_RESET`` seconds or more starts a new streak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from django.conf import settings

from engine.runtime.model import Container

RESTARTED_BY_POLICY = ("always", "unless-stopped")


def backoff_delay(restart_count: int) -> float:
    """Seconds to wait before restart number ``restart_count + 1``."""
    base = settings.HOSTPANEL_RESTART_BACKOFF_BASE
    return float(min(base * 2 ** min(restart_count, 20), settings.HOSTPANEL_RESTART_BACKOFF_MAX))


def parse_time(value: str | None) -> datetime | None:
    """An engine or report timestamp (ISO 8601, ``Z`` allowed) as an aware datetime; None if empty
    or not one."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RestartDecision:
    """What to do with a container that stopped by itself.

    ``exited``: its policy does not restart it. ``backoff``: not before ``due``. ``start``: now, as
    restart number ``restart_count + 1`` of crash streak ``streak`` (the new values to record).
    """

    action: Literal["exited", "backoff", "start"]
    due: datetime | None = None
    restart_count: int = 0
    streak: int = 0


def after_exit(
    container: Container,
    policy: str,
    max_retries: int | None,
    restart_count: int,
    crash_streak: int,
    next_restart_at: datetime | None,
    now: datetime,
) -> RestartDecision:
    """Decide on ``container`` (stopped by itself) by its restart ``policy`` (``on-failure`` with
    at most ``max_retries`` restarts) and the replica's recorded restart state."""
    failed = container.exit_code != 0 or container.status == "oom-killed"
    should = policy in RESTARTED_BY_POLICY or (
        policy == "on-failure" and failed and (max_retries is None or restart_count < max_retries)
    )
    if not should:
        return RestartDecision("exited")
    streak = crash_streak
    started, finished = parse_time(container.started_at), parse_time(container.finished_at) or now
    ran = None if started is None else (finished - started).total_seconds()
    if ran is not None and ran >= settings.HOSTPANEL_RESTART_BACKOFF_RESET:
        streak = 0  # it ran long enough: back to the shortest back-off
    due = next_restart_at or finished + timedelta(seconds=backoff_delay(streak))
    if due > now:
        return RestartDecision("backoff", due=due, restart_count=restart_count, streak=streak)
    return RestartDecision("start", restart_count=restart_count + 1, streak=streak + 1)
