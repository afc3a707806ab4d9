"""The one place the panel sends tasks to host agents (a seam tests replace)."""

from __future__ import annotations

from typing import Any


def send_reconcile(host_id: int, queue: str) -> None:
    """Ask the agent on ``queue`` to reconcile host ``host_id``."""
    from hostpanel.hosts.tasks import reconcile_host

    reconcile_host.apply_async(args=[host_id], queue=queue)


def send_collect_usage(host_id: int, queue: str) -> None:
    """Ask the agent on ``queue`` to collect its tenants' usage."""
    from hostpanel.hosts.tasks import collect_usage

    collect_usage.apply_async(args=[host_id], queue=queue)


ASK_TIMEOUT = 10.0


def _ask(task_name: str, args: list[Any], queue: str) -> Any:
    """Run a read-only task on the agent of ``queue`` and wait for its answer."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from hostpanel.errors import HostUnavailable
    from hostpanel.hosts import tasks

    task = getattr(tasks, task_name)
    result = task.apply_async(args=args, queue=queue, expires=ASK_TIMEOUT)
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


def fetch_stats(replica_id: int, queue: str) -> dict[str, Any]:
    """One reading of a container's cgroup counters, from the agent of its host."""
    stats: dict[str, Any] = _ask("container_stats", [replica_id], queue)
    return stats
