"""The one place the panel sends tasks to host agents (a seam tests replace).

The panel never imports the agent (hostpanel/agent/; import-linter's contracts): tasks are
sent by name, the names of hostpanel/agent/tasks.py's tasks (a test checks each is there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from uuid import uuid4

from celery.exceptions import TimeoutError as CeleryTimeout

from hostpanel.celery import app
from hostpanel.errors import HostUnavailable

if TYPE_CHECKING:
    from celery.result import AsyncResult

AGENT_TASKS = "hostpanel.agent.tasks"


class ExecSession(Protocol):
    """What starting an exec needs of an admitted session (terminal.services.ExecTicket has it;
    hosts sits below terminal, so it names the fields, not the class)."""

    @property
    def session(self) -> str: ...
    @property
    def container_name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def command(self) -> tuple[str, ...]: ...
    @property
    def audit_id(self) -> int: ...


def send(task: str, *, answer: bool = False, **options: Any) -> AsyncResult:
    """Send the agent's task ``task`` (its name in hostpanel/agent/tasks.py) with Celery's options.

    Only an ``answer`` awaited (:func:`_ask`) subscribes to its result: sent by name, Celery
    would otherwise subscribe for every task (and an agent's own Redis user may not).
    """
    return app.send_task(f"{AGENT_TASKS}.{task}", ignore_result=not answer, **options)


def send_reconcile(host_id: int, queue: str) -> None:
    """Ask the agent on ``queue`` to reconcile host ``host_id``."""
    send("reconcile_host", args=[host_id], queue=queue)


def send_start_exec(
    ticket: ExecSession,
    *,
    reply_channel: str,
    rows: int,
    cols: int,
    idle_seconds: float,
    expires: float,
    options: dict[str, Any] | None = None,
) -> None:
    """Ask the agent of the ticket's host to start an exec session relaying to ``reply_channel``.

    The task expires after ``expires`` seconds: a consumer gives up waiting then. ``options``
    are the Docker API's exec settings (``tty``, ``env``, ``user``, ``workdir``, ``stdin``).
    """
    send(
        "start_exec",
        kwargs={
            "session": ticket.session,
            "container_name": ticket.container_name,
            "reply_channel": reply_channel,
            "command": list(ticket.command),
            "rows": rows,
            "cols": cols,
            "audit_id": ticket.audit_id,
            "idle_seconds": idle_seconds,
            **(options or {}),
        },
        queue=ticket.queue,
        expires=expires,
    )


def send_start_copy(queue: str, *, expires: float, **request: Any) -> None:
    """Ask the agent on ``queue`` to start a ``docker cp`` (the fields of terminal.archive.CopyRequest)."""
    send("start_copy", kwargs=request, queue=queue, expires=expires)


def send_purge_tenant(host_id: int, queue: str, slug: str) -> None:
    """Ask the agent on ``queue`` to purge the deleted tenant ``slug`` from host ``host_id``."""
    send("purge_tenant", args=[host_id, slug], queue=queue)


ASK_TIMEOUT = 10.0


def _ask(task_name: str, args: list[Any], queue: str) -> Any:
    """Run a read-only task on the agent of ``queue`` and wait for its answer."""
    # The answer's key is celery-task-meta-<queue>.<uuid>: a host's Redis user may touch only its own.
    result = send(
        task_name, answer=True, args=args, queue=queue, expires=ASK_TIMEOUT, task_id=f"{queue}.{uuid4()}"
    )
    try:
        return result.get(timeout=ASK_TIMEOUT)
    except CeleryTimeout as exc:
        raise HostUnavailable(f"the agent of queue {queue} did not answer within {ASK_TIMEOUT:.0f}s") from exc
    finally:
        result.forget()


def fetch_logs(replica_id: int, queue: str, tail: int) -> list[dict[str, str]]:
    """A container's last ``tail`` lines, from the agent of its host."""
    lines: list[dict[str, str]] = _ask("container_logs", [replica_id, tail], queue)
    return lines


def fetch_log_lines(replica_id: int, queue: str, tail: int, after: str | None) -> dict[str, Any]:
    """A container's log lines with cursors (the last ``tail``, or those after ``after``), from its agent."""
    answer: dict[str, Any] = _ask("container_log_lines", [replica_id, tail, after], queue)
    return answer


def fetch_stats(replica_id: int, queue: str) -> dict[str, Any]:
    """One reading of a container's cgroup counters, from the agent of its host."""
    stats: dict[str, Any] = _ask("container_stats", [replica_id], queue)
    return stats


def fetch_sample(replica_id: int, queue: str) -> dict[str, Any]:
    """One stats sample of a container, with its host's CPU count and memory, from its agent."""
    answer: dict[str, Any] = _ask("container_sample", [replica_id], queue)
    return answer


def fetch_top(replica_id: int, queue: str) -> dict[str, Any]:
    """The processes of a container (``processes``: ProcessRow fields), from its agent."""
    answer: dict[str, Any] = _ask("container_top", [replica_id], queue)
    return answer
