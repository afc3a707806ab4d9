"""A build on a host agent (it holds no database): the internal API's adapter of the build path.

The ``run_build`` task arrives on the host's ``build.<host>`` queue. The build is claimed with
``POST builds/<id>/claim`` (its plain spec; refused when it is not queued or not this host's), then
run by :func:`hostpanel.agent.build_runner.run`: its context upload is fetched with ``GET
builds/<id>/context``, its output is posted in bounded batches to ``POST builds/<id>/output`` (the
panel stores it on the row and sends it to live viewers), its exported image goes to ``POST
builds/<id>/image`` (stored as the build's own tenant's image) and its end to ``POST
builds/<id>/finish``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.engine import Engine
from hostpanel.agent import build_runner
from hostpanel.agent.build_runner import LineSink, StepFailed
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.builds.spec import LINE_MAX, BuildSpec

log = logging.getLogger(__name__)
BATCH = 500  # lines of one post (what the panel takes: hostpanel/builds/internal.py)


class RemoteSink(LineSink):
    """Output lines to the panel (``POST builds/<id>/output``); it numbers and stores them."""

    def __init__(self, client: InternalClient, build_id: int) -> None:
        self.client = client
        self.build_id = build_id
        super().__init__(str(build_id))

    def deliver(self, lines: list[dict[str, str]], kept: list[dict[str, str]]) -> None:
        plain = [{"stream": line["stream"], "text": line["text"][:LINE_MAX]} for line in lines]
        for start in range(0, len(plain), BATCH):
            self.client.build_output(self.build_id, plain[start : start + BATCH])


def run_remote_build(build_id: int, engine: Engine, client: InternalClient) -> str | None:
    """Claim build ``build_id`` and run it on ``engine``; its error ("" on success), or None when the
    panel did not give it to this host (not queued any more, another host's, refused)."""
    try:
        spec = BuildSpec.from_dict(client.claim_build(build_id))
    except PanelError as exc:
        log.warning("build %s: not run here: %s", build_id, exc)
        return None
    sink = RemoteSink(client, build_id)
    try:
        error = build_runner.run(
            spec,
            engine,
            sink,
            lambda scratch: _fetch_context(client, build_id, scratch),
            lambda tar: _upload_image(client, build_id, tar),
        )
    finally:
        sink.close()
    try:
        client.finish_build(build_id, error)
    except PanelError as exc:  # failed meanwhile (its host marked down): it stays so
        log.warning("build %s: its end was not recorded: %s", build_id, exc)
    return error


def _fetch_context(client: InternalClient, build_id: int, scratch: Path) -> Path:
    archive = scratch / "context.tar"
    try:
        with archive.open("wb") as out:
            client.build_context(build_id, out)
    except PanelError as exc:
        raise StepFailed(f"fetching the build's context from the panel: {exc}") from exc
    return archive


def _upload_image(client: InternalClient, build_id: int, tar: Path) -> None:
    try:
        with tar.open("rb") as f:
            client.build_image(build_id, f, tar.stat().st_size)
    except PanelError as exc:
        raise StepFailed(f"storing the image on the panel: {exc}") from exc
