"""engine.fsutil's locks: what recover() tells a crash's leftover from a create in progress by."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.fsutil import file_lock, lock_if_free


def test_a_missing_lock_file_is_free_and_is_not_made(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "c1"
    with lock_if_free(path) as free:
        assert free
    assert not path.parent.exists()


def test_a_lock_held_elsewhere_is_not_free_and_a_released_one_is(tmp_path: Path) -> None:
    path = tmp_path / "c1"
    # another open file of this process holds it, as another process would
    with file_lock(path), lock_if_free(path) as free:
        assert not free
    with lock_if_free(path) as free:
        assert free
        # held for the block: another process cannot take it meanwhile
        assert subprocess.run(["flock", "--nonblock", str(path), "true"]).returncode != 0
    assert subprocess.run(["flock", "--nonblock", str(path), "true"]).returncode == 0


def test_a_dead_holders_lock_is_free(tmp_path: Path) -> None:
    path = tmp_path / "c1"
    path.touch()
    holder = subprocess.Popen(
        ["flock", "--no-fork", str(path), "sh", "-c", "echo held; exec sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with lock_if_free(path) as free:
        assert not free
    holder.kill()  # as a SIGKILLed agent: no clean-up code runs, the kernel drops its flock
    holder.communicate()
    with lock_if_free(path) as free:
        assert free
