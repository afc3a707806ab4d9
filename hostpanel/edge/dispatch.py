"""The one place the panel sends routing tables to host agents (a seam tests replace)."""

from __future__ import annotations

from typing import Any

from hostpanel.celery import app

APPLY_ROUTES = "hostpanel.agent.edge_tasks.apply_routes"  # sent by name: the panel never imports the agent


def send_routes(queue: str, table: dict[str, Any]) -> None:
    """Ask the agent on ``queue`` to serve ``table`` (ignored there when it has a newer one)."""
    app.send_task(APPLY_ROUTES, args=[table], queue=queue, ignore_result=True)
