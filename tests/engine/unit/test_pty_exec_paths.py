"""Where an exec session keeps its console socket: always at a path a unix socket can bind."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from engine.runtime.pty_exec import _session_dir


@pytest.mark.parametrize("depth", [0, 12])
def test_console_socket_path_always_binds(depth: int) -> None:
    short = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    run_dir = short.joinpath(*["a-rather-long-directory-name"] * depth)
    workdir = _session_dir(run_dir)
    try:
        assert workdir.stat().st_mode & 0o777 == 0o700
        # A short root keeps it under the engine's run dir; a long one moves it to /tmp.
        assert (workdir.parent == run_dir) == (depth == 0)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(workdir / "console.sock"))
    finally:
        shutil.rmtree(workdir)
        shutil.rmtree(short)
