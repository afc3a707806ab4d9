"""A build's time limit on the real kernel: past it the RUN container is killed and nothing is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.build.model import BuildOptions, BuildTimedOut
from engine.engine import Engine
from engine.errors import ImageNotFound
from engine.images.model import Image
from tests.engine.privileged.test_build import assert_nothing_left, write_context

pytestmark = pytest.mark.privileged


def test_an_endless_run_is_killed_at_the_time_limit_and_leaves_nothing(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 600\n"})
    output: list[tuple[str, str]] = []
    with pytest.raises(BuildTimedOut, match=r"longer than its time limit of 2 seconds"):
        engine.build(
            BuildOptions(context=ctx, tag="forever:1", time_limit=2), lambda s, t: output.append((s, t))
        )
    assert ("stdout", "started") in output  # it ran, then was killed
    assert_nothing_left(engine, {busybox.id})  # the engine fixture checks mounts and cgroups
    with pytest.raises(ImageNotFound):
        engine.images.resolve("forever:1")


def test_a_build_within_its_time_limit_is_not_touched(engine: Engine, busybox: Image, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo quick > /q\n"})
    result = engine.build(BuildOptions(context=ctx, tag="quick:1", time_limit=600))
    assert engine.images.resolve("quick:1").id == result.image.id
    engine.images.remove("quick:1")
