"""The seam through which the panel sends a build to a host agent (tests record instead)."""

from __future__ import annotations


def send_build(build_id: int, queue: str) -> None:
    """Ask the build workers on ``queue`` (``build.<host>``) to run build ``build_id``."""
    from hostpanel.agent.build_tasks import run_build

    run_build.apply_async(args=[build_id], queue=queue)
