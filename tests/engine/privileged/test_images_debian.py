"""`bootstrap_debian`: debootstrap minbase from the host's mirror, one layer, no apt caches."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.images.store import ImageStore
from engine.paths import EnginePaths

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: debootstrap chroots and chowns"),
]
UID_BASE = 100000


def test_bootstrap_debian_with_python(tmp_path: Path) -> None:
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.fail("debootstrap is not installed; `hpctl host setup` installs it")
    store = ImageStore(EnginePaths(tmp_path / "root"))
    image = store.bootstrap_debian(include=["python3"])

    assert image.repo_tags == ("debian:bookworm",)
    assert image.config.cmd == ("bash",)
    assert len(image.layers) == 1
    assert image.size > 50_000_000
    assert list(store.paths.tmp.iterdir()) == []  # the debootstrap scratch tree is gone
    assert not any(
        line.split()[4].startswith(str(tmp_path))
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )

    [layer] = store.layer_dirs(image, UID_BASE)
    assert (layer / "usr" / "bin" / "bash").is_file()
    assert os.stat(layer / "usr" / "bin" / "bash").st_uid == UID_BASE
    assert os.stat(layer).st_uid == UID_BASE
    assert list((layer / "var" / "cache" / "apt" / "archives").glob("*.deb")) == []
    assert [p.name for p in (layer / "var" / "lib" / "apt" / "lists").glob("*_*")] == []
    assert os.listdir(layer / "dev") == []
    # the image really runs: its own python, from the unpacked layer
    result = subprocess.run(
        ["chroot", str(layer), "/usr/bin/python3", "-c", "import sys; print(sys.version_info[0])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
