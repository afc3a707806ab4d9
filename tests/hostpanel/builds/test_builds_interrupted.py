"""A build killed with its host agent leaves a RUN container, a temporary image and a scratch
directory; the next agent start removes them (and leaves a build in progress alone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.build.recover import BUILD_LABEL
from engine.engine import Engine
from hostpanel.agent import build_runner
from tests.stack import REPO, wait_for

pytestmark = pytest.mark.privileged

BUILD_THEN_HANG = """
import sys, tempfile
from pathlib import Path
from engine.engine import Engine
from engine.build.model import BuildOptions
engine = Engine(root=sys.argv[1], instance=sys.argv[2])
tempfile.mkdtemp(prefix="hpbuild-", dir=engine.paths.tmp)  # as the agent's build_runner.run does
engine.build(BuildOptions(context=Path(sys.argv[3]), tag="killed:1"))
"""


def test_what_a_killed_build_left_is_removed_at_the_next_agent_start(
    engine: Engine,
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 600\n")
    images_before = {image.id for image in engine.images.list()}
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD_THEN_HANG, str(engine.paths.root), engine.instance, str(context)],
        cwd=REPO,
    )
    try:
        try:
            wait_for(
                lambda: [c for c in engine.list() if BUILD_LABEL in c.labels],
                60,
                "the build's RUN container to run",
            )
        finally:
            proc.kill()  # the agent dies mid-build: nothing of the build's own cleanup runs
            proc.wait()
        check_cleanup(engine, images_before)
    finally:  # whatever failed above, leave no running container behind
        for container in engine.list(all=True):
            engine.remove(container.id, force=True)


def check_cleanup(engine: Engine, images_before: set[str]) -> None:
    left = [c for c in engine.list(all=True) if BUILD_LABEL in c.labels]
    assert len(left) == 1 and left[0].status == "running"  # conmon keeps it going
    assert {image.id for image in engine.images.list()} != images_before  # the step's temporary image

    pin = engine.build_cache.pin()  # a build in progress (in this process) is not touched
    try:
        assert engine.build_cache.pin_is_live(pin.id)
        removed = build_runner.clean_interrupted_builds(engine)
        assert engine.build_cache.pin_is_live(pin.id)
    finally:
        pin.release()
    assert not engine.build_cache.pin_is_live(pin.id)
    assert f"build container {left[0].name}" in removed
    assert any(line.startswith("build image ") for line in removed)
    assert any(line.startswith("build scratch directory hpbuild-") for line in removed)
    assert engine.list(all=True) == []
    assert {image.id for image in engine.images.list()} == images_before
    assert build_runner.clean_interrupted_builds(engine) == []  # nothing more to do
    # the engine fixture checks that no mount, cgroup or tmp file is left
