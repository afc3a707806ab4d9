"""`manage.py dockerapi`, as `make run` starts it: a banner with the address, TLS that wants a
client certificate, and a clean exit on SIGTERM (what `make stop` sends)."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_the_command_serves_tls_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTPANEL_", "DATABASE_URL"))}
    env |= {"HOSTPANEL_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "dockerapi", "--bind", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"tcp://127\.0\.0\.1:(\d+) \(TLS", banner)
        assert match, banner + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        port = int(match.group(1))
        ca_dir = tmp_path / "var" / "dockerapi"
        for name in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem"):
            assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600, name
        context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))  # no client certificate
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises((ssl.SSLError, ConnectionError)),
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            if not tls.recv(100):  # TLS 1.3: the refusal arrives with the first read
                raise ConnectionError("closed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
