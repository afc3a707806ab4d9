"""When the agent's next reconcile is due, if sooner than its period.

Any reconcile of the agent process may ask to come back soon (its report's ``retry_in``: a restart
back-off ends, a readiness or health probe's result is due): the loop's own, or one a task started
(``reconcile_host`` after a deploy). The loop (``hostagent._agent_loop``) sleeps on :data:`due`, so
an ask from a task wakes it too: a new replica's readiness is reported within its probe interval,
not at the next periodic reconcile.
"""

from __future__ import annotations

import threading
import time

SOONEST = 0.2  # seconds: the soonest an ask brings a reconcile back
STOP_CHECK = 1.0  # seconds: how often a sleep looks at its stop event


class Wakeup:
    """The earliest time a reconcile asked to come back at (monotonic seconds), and a sleep that
    ends then, at its deadline or at its stop, whichever comes first."""

    def __init__(self, soonest: float = SOONEST) -> None:
        self.soonest = soonest
        self._cond = threading.Condition()
        self._at: float | None = None

    def ask(self, seconds: float | None) -> None:
        """Come back within ``seconds`` (at least :attr:`soonest`); None asks nothing."""
        if seconds is None:
            return
        at = time.monotonic() + max(seconds, self.soonest)
        with self._cond:
            if self._at is None or at < self._at:
                self._at = at
                self._cond.notify_all()

    def take(self) -> None:
        """A reconcile starts now: what was asked is served by it."""
        with self._cond:
            self._at = None

    def is_due(self, now: float) -> bool:
        """Whether an ask's time has come."""
        with self._cond:
            return self._at is not None and now >= self._at

    def sleep(self, deadline: float, stop: threading.Event) -> None:
        """Sleep until ``deadline`` (monotonic), an asked time if sooner, or ``stop``."""
        with self._cond:
            while not stop.is_set():
                now = time.monotonic()
                until = deadline if self._at is None else min(deadline, self._at)
                if now >= until:
                    return
                self._cond.wait(min(until - now, STOP_CHECK))


due = Wakeup()  # this agent process's
