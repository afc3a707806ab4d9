"""Serve the panel on one address: gunicorn for HTTP, daphne for WebSockets, Caddy in front.

``python -m hostpanel.serve --host H --port P`` is what `make run` execs (and what the
browser tests and ``bench/api_load.py`` start through ``tests/stack.py``):

- gunicorn runs ``hostpanel.wsgi`` in ``--workers`` processes of ``--threads`` threads
  (gthread), so requests use every core instead of one daphne process's one thread;
- daphne runs ``hostpanel.asgi`` for ``/ws/...`` only (live logs, terminal): a socket's
  consumer is async and cheap, and the Channels layer (Redis) joins it to the agents;
- a Caddy (Debian's, already the edge proxy's binary) listens on H:P and routes ``/ws/*``
  to daphne and everything else to gunicorn; both listen on loopback ports only. Caddy
  sets ``X-Forwarded-For`` to the client's address, and 127.0.0.1 is added to
  ``HOSTPANEL_TRUSTED_PROXIES`` for the two servers, so audit entries and login lockouts
  keep seeing the real client.

Without caddy on PATH it falls back to one daphne serving everything (the old way), and
says so. ``--single`` asks for that on purpose (the bench compares the two).
The three processes stop together: on SIGTERM/SIGINT, or when any of them ends.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def default_workers(cpus: int | None = None) -> int:
    """gunicorn worker processes for this machine: two per CPU (a request is mostly Python)."""
    return max(2, 2 * (cpus or os.cpu_count() or 1))


def front_config(listen: str, http_upstream: str, ws_upstream: str) -> dict[str, Any]:
    """Caddy's JSON config of the panel's front door: ``/ws/*`` to daphne, the rest to gunicorn.

    No admin API (nothing reconfigures it), no automatic HTTPS (it serves what `make run`
    served: plain HTTP on ``listen``; TLS belongs to whatever fronts the machine).
    """

    def proxy(upstream: str) -> dict[str, Any]:
        return {"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}

    return {
        "admin": {"disabled": True},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {
            "http": {
                "servers": {
                    "panel": {
                        "listen": [listen],
                        "automatic_https": {"disable": True},
                        "routes": [
                            {"match": [{"path": ["/ws/*"]}], "handle": [proxy(ws_upstream)]},
                            {"handle": [proxy(http_upstream)]},
                        ],
                    }
                }
            }
        },
    }


def gunicorn_command(bind: str, workers: int, threads: int) -> list[str]:
    """gunicorn serving ``hostpanel.wsgi`` with gthread workers on ``bind``."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        bind,
        "--timeout",
        "120",  # a worker whose main loop hangs this long is replaced (requests run in threads)
        "--graceful-timeout",
        "5",  # requests in flight get 5 s on SIGTERM
        "--keep-alive",
        "5",
        "--no-control-socket",  # gunicorn's default is one path per user: two panels would collide
        "hostpanel.wsgi:application",
    ]


def daphne_command(host: str, port: int) -> list[str]:
    """daphne serving ``hostpanel.asgi`` on ``host:port``."""
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "hostpanel.asgi:application"]


def free_loopback_port() -> int:
    """A TCP port nothing listens on right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def trusting_loopback(env: dict[str, str]) -> dict[str, str]:
    """``env`` with 127.0.0.1 (the front Caddy) among the trusted proxies."""
    trusted = [p.strip() for p in env.get("HOSTPANEL_TRUSTED_PROXIES", "").split(",") if p.strip()]
    if LOOPBACK not in trusted:
        trusted.append(LOOPBACK)
    return env | {"HOSTPANEL_TRUSTED_PROXIES": ",".join(trusted)}


def _listens(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def _end_with_parent() -> None:
    """In a child before it runs: SIGTERM when the supervisor dies, even of SIGKILL (prctl)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Child processes that live and die together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.signals: list[int] = []  # the stop signals received

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(list(args), cwd=REPO, env=env, preexec_fn=_end_with_parent)
        self.children.append((name, proc))

    def wait_listening(self, name: str, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not _listens(port):
            if self.signals:
                raise SystemExit(0)
            if self.first_ended() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve: {name} did not start listening on {LOOPBACK}:{port}")
            time.sleep(0.05)

    def first_ended(self) -> str | None:
        return next((name for name, proc in self.children if proc.poll() is not None), None)

    def stop(self) -> None:
        for _, proc in reversed(self.children):  # the front door first
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 8  # inside `make stop`'s 10 s before its SIGKILL
        for _, proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve(host: str, port: int, workers: int, threads: int, single: bool) -> int:
    """Run the panel on ``host:port`` until a signal or a child's end; the exit status."""
    env = dict(os.environ)
    caddy = shutil.which("caddy")
    if single or caddy is None:
        if not single:
            print("serve: caddy is not installed: one daphne serves everything", file=sys.stderr)
        os.execve(sys.executable, daphne_command(host, port), env)
    assert caddy is not None
    backend_env = trusting_loopback(env)
    http_port, ws_port = free_loopback_port(), free_loopback_port()
    sup = Supervisor()

    def on_signal(signum: int, _frame: object) -> None:
        sup.signals.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with tempfile.TemporaryDirectory(prefix="hpfront-") as home:
        config = Path(home) / "front.json"
        listen = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        config.write_text(
            json.dumps(front_config(listen, f"{LOOPBACK}:{http_port}", f"{LOOPBACK}:{ws_port}"))
        )
        caddy_env = env | {"HOME": home, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home}
        try:
            sup.start("gunicorn", gunicorn_command(f"{LOOPBACK}:{http_port}", workers, threads), backend_env)
            sup.start("daphne", daphne_command(LOOPBACK, ws_port), backend_env)
            sup.wait_listening("gunicorn", http_port)
            sup.wait_listening("daphne", ws_port)
            sup.start("caddy", [caddy, "run", "--config", str(config)], caddy_env)
            print(
                f"serve: http://{listen}/ -> gunicorn ({workers} workers x {threads} threads) "
                f"on {LOOPBACK}:{http_port}, /ws/ -> daphne on {LOOPBACK}:{ws_port}",
                file=sys.stderr,
                flush=True,
            )
            while not sup.signals:
                ended = sup.first_ended()
                if ended is not None:
                    print(f"serve: {ended} ended; stopping the panel", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            return 0
        finally:
            sup.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hostpanel.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", LOOPBACK))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("HOSTPANEL_HTTP_WORKERS") or default_workers()),
        help="gunicorn worker processes (HOSTPANEL_HTTP_WORKERS; default two per CPU)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("HOSTPANEL_HTTP_THREADS") or 4),
        help="threads per worker (HOSTPANEL_HTTP_THREADS; default 4)",
    )
    parser.add_argument("--single", action="store_true", help="one daphne for everything (the old way)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be at least 1")
    return serve(args.host, args.port, args.workers, args.threads, args.single)


if __name__ == "__main__":
    sys.exit(main())
