"""The seam through which the panel sends a build to a host agent (tests record instead)."""

from __future__ import annotations

from hostpanel.celery import app

RUN_BUILD = "hostpanel.agent.build_tasks.run_build"  # sent by name: the panel never imports the agent


def send_build(build_id: int, queue: str) -> None:
    """Ask the build workers on ``queue`` (``build.<host>``) to run build ``build_id``."""
    app.send_task(RUN_BUILD, args=[build_id], queue=queue, ignore_result=True)
