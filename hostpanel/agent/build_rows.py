"""A build on the host agent with the database: the Build row's adapter of the one build path.

The ``run_build`` task (:mod:`hostpanel.agent.build_tasks`) hands the row here. The build is claimed
(:func:`hostpanel.builds.services.claim_build`: a build sent twice runs once), run by
:func:`hostpanel.agent.build_runner.run` with the panel's spec of the row, its output kept in the row
and sent to the live stream (:class:`OutputSink`), its exported image stored as the build's own
tenant's image and its end recorded (:func:`hostpanel.builds.services.finish_build`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.engine import Engine
from hostpanel.agent import build_runner
from hostpanel.agent.build_runner import LineSink
from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.images.models import Image

log = logging.getLogger(__name__)


class OutputSink(LineSink):
    """The database path's sink: keeps the last lines in the row and sends them to the log stream.

    Only a running build's row is updated (one failed meanwhile keeps its reason). Each line
    carries its ``cursor``, the same in the row and on the stream, so a page showing the stored
    lines joins the live ones without gap or repeat. Neither a database nor a Redis outage fails
    the build (:class:`build_runner.LineSink`).
    """

    def __init__(self, build: Build) -> None:
        self.build = build
        super().__init__(str(build.pk))

    def deliver(self, lines: list[dict[str, str]], kept: list[dict[str, str]]) -> None:
        try:  # first the row, so that whoever sees a line live finds the lines before it stored
            Build.objects.filter(pk=self.build.pk, status=Build.Status.RUNNING).update(output=kept)
        except Exception:
            log.warning("build %s: could not store output lines", self.key, exc_info=True)
        services.publish_quietly(self.key, lines)  # a viewer-side outage (Redis) must not fail the build

    def thread_done(self) -> None:
        from django.db import connection

        connection.close()  # the flusher thread's own database connection

    def close(self) -> None:
        super().close()
        services.end_stream(self.key)


def execute_build(build: Build, engine: Engine) -> Build:
    """Run ``build`` on ``engine`` (a build worker of the host agent with the database calls this)
    and record the outcome. Never raises for a failed build: the row says ``failed`` with the error;
    the context upload is deleted either way. The tenant's next waiting build is sent when it ends."""
    try:
        return _execute(build, engine)
    finally:
        if build.host is not None:
            services.dispatch_builds(build.host)


def _execute(build: Build, engine: Engine) -> Build:
    if not services.claim_build(build):
        return build
    stored: list[Image] = []
    sink = OutputSink(build)

    def store_image(path: Path) -> None:
        with path.open("rb") as f:
            stored.append(services.store_build_image(build, f))

    try:
        archive = Path(build.context_archive)
        error = build_runner.run(services.spec_of(build), engine, sink, lambda scratch: archive, store_image)
    finally:
        sink.close()
    services.finish_build(build, error, stored[0] if stored and not error else None)
    build.refresh_from_db()
    return build
