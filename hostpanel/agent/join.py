"""The join command: ``sh deploy/join.sh --panel https://PANEL --token hpjoin_...``.

Run as root from a checkout of HostPanel (the same version as the panel) on a fresh Debian 12
machine. deploy/join.sh makes the virtualenv (the stdlib-only package step first) and runs
this module in it (``python -m hostpanel.agent.join``). It is code of the checkout rather than a
script the panel serves, so what runs as root on the host is the reviewed code of that version,
never something fetched over the network with the token. In order:

1. installs what the agent needs, the way `make install` does: the Debian packages
   (``engine.host.packages --install``), the requirements, ``hpctl host setup``
   (``--skip-install`` is for tests only: the packages are already there);
2. generates the host's X25519 key pair: the private key is written 0600 to the state directory
   and never leaves the host;
3. registers over HTTPS: presents the one-time token and the public key to
   ``/internal/v1/register`` and receives the host's credentials (internal-API token, Redis URL
   with the host's own ACL user), written 0600 to ``credentials.json``;
4. starts the agent: with systemd, installs deploy/systemd/hostpanel-agent.service and enables
   it; else (or with ``--foreground``) execs ``manage.py hostagent --state-dir DIR`` in its place.

Arguments after ``--`` are handed to ``manage.py hostagent`` (e.g. ``--engine-root``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostpanel.agent import credentials as store

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
UNIT = REPO / "deploy" / "systemd" / "hostpanel-agent.service"
UNIT_TARGET = Path("/etc/systemd/system/hostpanel-agent.service")
AGENT_ENV = Path("/etc/hostpanel/agent.env")


class JoinError(Exception):
    """A step failed; the message says which and what to do."""


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    p = argparse.ArgumentParser(prog="python3 -m hostpanel.agent.join", description=__doc__.split("\n")[0])
    p.add_argument("--panel", required=True, help="the panel's URL (https://...)")
    p.add_argument("--token", required=True, help="the one-time join token `manage.py host add` printed")
    p.add_argument("--state-dir", type=Path, default=store.DEFAULT_STATE_DIR)
    p.add_argument("--ca-file", default="", help="PEM of a private CA to trust for the panel's HTTPS")
    p.add_argument(
        "--skip-install",
        action="store_true",
        help="TESTS ONLY: do not install packages nor the virtualenv (they are already there)",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="TESTS ONLY: allow a plain http:// panel URL (the token and credentials travel in clear)",
    )
    p.add_argument("--foreground", action="store_true", help="exec the agent here even with systemd")
    p.add_argument("--no-start", action="store_true", help="register only; start the agent yourself")
    return p.parse_args(argv), extra


def install() -> None:
    """Packages, the virtualenv's requirements and `hpctl host setup`: the steps of `make install`."""
    steps = [
        [sys.executable, "-m", "engine.host.packages", "--install"],
        [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "-r", str(REPO / "requirements.txt")],
        [str(VENV_PYTHON), "-m", "engine.cli", "host", "setup"],
    ]
    for step in steps:
        print("+ " + " ".join(step), flush=True)
        if subprocess.run(step, cwd=REPO, check=False).returncode != 0:
            raise JoinError(f"install step failed: {' '.join(step)}; fix it and run the join command again")


def generate_key(directory: Path) -> str:
    """A new X25519 key pair: the private key 0600 in ``directory``; returns the public key (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    store.write_private(store.state_dir(directory) / store.KEY_FILE, private)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


def register(args: argparse.Namespace, public_key: str) -> store.AgentCredentials:
    client = store.InternalClient(args.panel, ca_file=args.ca_file)
    try:
        answer = client.call("POST", "register", {"token": args.token, "public_key": public_key})
    except store.PanelError as exc:
        raise JoinError(f"registration refused: {exc}") from exc
    return save_credentials(args.state_dir, args.panel, answer, args.ca_file)


def save_credentials(
    state: Path, panel: str, answer: dict[str, Any], ca_file: str = ""
) -> store.AgentCredentials:
    """The credentials a registration answered (``name``, ``api_token``, ``redis_url``, ``queues``,
    ``transport_options``) for the panel at ``panel``, written 0600 to ``state`` (atomically)."""
    creds = store.AgentCredentials(
        panel=panel,
        name=answer["name"],
        api_token=answer["api_token"],
        redis_url=answer["redis_url"],
        queues=list(answer["queues"]),
        transport_options=dict(answer["transport_options"]),
        ca_file=ca_file,
    )
    store.save(state, creds)
    return creds


def agent_command(state: Path, extra: Sequence[str]) -> list[str]:
    return [str(VENV_PYTHON), str(REPO / "manage.py"), "hostagent", "--state-dir", str(state), *extra]


def start(args: argparse.Namespace, extra: Sequence[str]) -> None:
    """systemd when it runs this machine (and not ``--foreground``), else exec the agent here."""
    if Path("/run/systemd/system").is_dir() and not args.foreground:
        unit = UNIT.read_text().replace("/opt/hostpanel", str(REPO))
        UNIT_TARGET.write_text(unit)
        AGENT_ENV.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not AGENT_ENV.exists():
            store.write_private(AGENT_ENV, f"HOSTPANEL_AGENT_STATE_DIR={args.state_dir}\n".encode())
        for step in (["daemon-reload"], ["enable", "--now", "hostpanel-agent.service"]):
            if subprocess.run(["systemctl", *step], check=False).returncode != 0:
                raise JoinError(f"systemctl {' '.join(step)} failed; see `journalctl -u hostpanel-agent`")
        print("agent started: systemctl status hostpanel-agent", flush=True)
        return
    os.environ["HOSTPANEL_AGENT_STATE_DIR"] = str(args.state_dir.resolve())  # settings: no database
    command = agent_command(args.state_dir, extra)
    print("+ " + " ".join(command), flush=True)
    os.chdir(REPO)
    os.execv(command[0], command)


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    try:
        if not args.panel.startswith("https://") and not args.insecure_http:
            raise JoinError(
                f"--panel {args.panel}: give the panel's https:// URL (the token must not travel in clear)"
            )
        if not args.skip_install:
            install()
        creds = register(args, generate_key(args.state_dir))
        print(f"registered as host {creds.name}; credentials in {args.state_dir} (0600)", flush=True)
        if not args.no_start:
            start(args, extra)
    except JoinError as exc:
        print(f"join failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
