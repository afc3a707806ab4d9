"""Enrolling a host (issue 15), as the benches and the end-to-end tests do it.

An HTTPS front for the panel (a Caddy with its own internal CA, as in production), the join
command (``python -m hostpanel.agent.join``) with the install step skipped, the agent
arguments a joined host runs with, and the environment such a host has: nothing of the
panel's (no database or panel Redis URL, secret keys of its own, a var directory of its own).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from cryptography.fernet import Fernet

from bench.panel_stack import PanelStack, free_port, manage, stop_process, wait_for


def tls_front(
    directory: Path, upstream: int, address: str = "127.0.0.1"
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """A Caddy terminating HTTPS for ``address`` (its own internal CA) in front of ``upstream``;
    returns the process, its port and where its CA's root certificate appears."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    proxy = {"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{upstream}"}]}
    config = {
        "admin": {"disabled": True},
        "storage": {"module": "file_system", "root": str(directory / "data")},
        "apps": {
            "http": {
                "servers": {
                    "front": {
                        "listen": [f"{address}:{port}"],
                        "routes": [{"handle": [proxy]}],
                        "tls_connection_policies": [{"default_sni": address}],
                        "automatic_https": {"disable_redirects": True},
                    }
                }
            },
            "tls": {
                "certificates": {"automate": [address]},
                "automation": {"policies": [{"subjects": [address], "issuers": [{"module": "internal"}]}]},
            },
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    (directory / "front.json").write_text(json.dumps(config))
    env = os.environ | {"HOME": str(directory), "XDG_DATA_HOME": str(directory / "xdg")}
    with (directory / "front.log").open("ab") as out:
        proc = subprocess.Popen(
            ["caddy", "run", "--config", str(directory / "front.json")], env=env, stdout=out, stderr=out
        )
    return proc, port, directory / "data" / "pki" / "authorities" / "local" / "root.crt"


def https_front(stack: PanelStack, cleanup: ExitStack, address: str = "127.0.0.1") -> tuple[str, Path]:
    """:func:`tls_front` on ``address`` in front of ``stack``'s panel, stopped by ``cleanup``;
    the panel's HTTPS URL there and the CA file to trust, once the CA exists."""
    upstream = int(stack.base.rsplit(":", 1)[1])
    front, port, ca_file = tls_front(stack.scratch / "front", upstream, address)
    cleanup.callback(stop_process, front)
    wait_for(ca_file.exists, 30, "caddy's internal CA", 0.1)
    return f"https://{address}:{port}", ca_file


def joined_agent_args(root: Path, instance: str) -> list[str]:
    """``manage.py hostagent`` arguments of a joined agent (after the join command's ``--``):
    its own engine, the loopback address, quick beats and reconciles, a fixed capacity."""
    return [
        "--engine-root",
        str(root),
        "--instance",
        instance,
        "--address",
        "127.0.0.1",
        "--heartbeat-interval",
        "0.5",
        "--reconcile-interval",
        "1",
        "--cpus",
        "4",
        "--memory",
        str(8 * 1024**3),
    ]


def join_args(panel_url: str, token: str, ca_file: Path, state_dir: Path, *extra: str) -> list[str]:
    """The join command as a test or bench runs it: this Python, the install step skipped (the
    packages are here already), ``extra`` join options then ``--`` and ``manage.py hostagent``
    arguments."""
    return [
        sys.executable,
        "-m",
        "hostpanel.agent.join",
        "--panel",
        panel_url,
        "--token",
        token,
        "--ca-file",
        str(ca_file),
        "--state-dir",
        str(state_dir),
        "--skip-install",
        *extra,
    ]


def joined_env(panel_env: dict[str, str], var_dir: Path, state_dir: Path) -> dict[str, str]:
    """The environment of a joined host from the panel's: no database or panel Redis URL, secret
    keys of its own (a secret reaches it sealed to its key), ``var_dir`` and ``state_dir`` its own."""
    env = {k: v for k, v in panel_env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {
        "HOSTPANEL_SECRET_KEYS": Fernet.generate_key().decode(),
        "HOSTPANEL_VAR_DIR": str(var_dir),
        "HOSTPANEL_AGENT_STATE_DIR": str(state_dir.resolve()),
    }


def add_host(panel_env: dict[str, str], name: str) -> str:
    """``manage.py host add NAME`` against the panel of ``panel_env``; the join token it prints."""
    added = manage(panel_env, "host", "add", name)
    match = re.search(r"--token (hpjoin_\S+)", added)
    if match is None:
        raise SystemExit(f"manage.py host add {name} printed no join token:\n{added}")
    return match.group(1)
