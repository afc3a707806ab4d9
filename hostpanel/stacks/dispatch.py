"""The one place stacks send tasks (a seam the unit tests replace)."""

from __future__ import annotations

from hostpanel.celery import app
from hostpanel.hosts.models import Host

ADVANCE_STACK = "hostpanel.stacks.tasks.advance_stack"  # by name: tasks.py imports services, which send
ADVANCE_EVERY = 0.5  # seconds between a waiting stack's checks (the agents' heartbeat also advances it)


def send_advance(stack_id: int, countdown: float = 0.0) -> None:
    """Ask an agent that is up to take the stack's deployment a step further (waiting services)."""
    host = Host.objects.filter(state=Host.State.UP).order_by("-last_heartbeat", "name").first()
    if host is not None:  # none up: the heartbeat of the first agent back advances it
        app.send_task(
            ADVANCE_STACK, args=[stack_id], queue=host.queue, countdown=countdown, ignore_result=True
        )
