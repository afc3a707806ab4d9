"""The one place the panel sends routing tables to host agents (a seam tests replace)."""

from __future__ import annotations

from typing import Any


def send_routes(queue: str, table: dict[str, Any]) -> None:
    """Ask the agent on ``queue`` to serve ``table`` (ignored there when it has a newer one)."""
    from hostpanel.agent.edge_tasks import apply_routes

    apply_routes.apply_async(args=[table], queue=queue)
