"""Cleaning up after builds whose process was killed mid-build (e.g. a host agent that died).

A build removes its RUN containers and the untagged images they ran when it ends,
even when it fails; only a killed process leaves them. Each RUN container carries
the label :data:`BUILD_LABEL` with its build's cache pin, whose lock the build holds
while it runs, so what a dead build left is told apart from a build in progress.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from engine.errors import Conflict, ImageNotFound

if TYPE_CHECKING:
    from engine.engine import Engine

BUILD_LABEL = "org.hostpanel.build"


def remove_interrupted_builds(engine: Engine) -> list[str]:
    """Remove the RUN containers of builds that no longer run, and the untagged images they ran.

    Returns what was removed ("build container NAME", "build image ID"). Builds still running
    (in this or another process) are left alone. Raises EngineError if a container cannot be removed.
    """
    removed: list[str] = []
    for container in engine.list(all=True):
        pin = container.labels.get(BUILD_LABEL)
        if pin is None or engine.build_cache.pin_is_live(pin):
            continue
        engine.remove(container.id, force=True)
        removed.append(f"build container {container.name}")
        with contextlib.suppress(ImageNotFound, Conflict):
            image = engine.images.resolve(container.image_id)
            if not image.repo_tags:  # a build step's temporary image, never a tagged one
                engine.images.remove(image.id, force=True)
                removed.append(f"build image {image.short_id}")
    return removed
