"""Pieces of the real stack that the end-to-end and browser tests both start.

Plain helpers (no fixtures): a private redis-server, this process's Celery app
pointed at it, host agent subprocesses with their own engines, and the
clean-up that leaves no container, network, volume or mount behind. The
fixtures that use them live in tests/hostpanel/e2e/conftest.py (one test at a
time) and tests/browser/conftest.py (one stack for the whole package).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from engine.engine import Engine

REPO = Path(__file__).resolve().parents[1]
GRACE_SECONDS = 3.0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 20
) -> None:
    """Signal ``proc`` and wait for it; SIGKILL when it does not end within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_daphne(endpoint: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """daphne serving ``hostpanel.asgi`` on ``endpoint`` (e.g. ``-b HOST -p PORT``), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "daphne", *endpoint, "hostpanel.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_panel(host: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The panel as `make run` serves it (``python -m hostpanel.serve``: Caddy in front, gunicorn
    for HTTP, daphne for /ws/) on ``host:port``, output to ``log``; SIGTERM stops all three.

    Two gunicorn workers unless ``env`` sets ``HOSTPANEL_HTTP_WORKERS`` (tests share the machine).
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hostpanel.serve", "--host", host, "--port", str(port)],
            cwd=REPO,
            env={"HOSTPANEL_HTTP_WORKERS": "2"} | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def redis_server(directory: Path, binds: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[str]:
    """``HOSTPANEL_TEST_REDIS_URL`` if given, else a private redis-server on a free port (its URL).

    Like the one `make run` starts, it requires a password (``requirepass`` in a
    0600 config file); the URL carries it. It listens on ``binds`` (the URL names the first;
    asking for more than loopback always starts a private one).
    """
    given = os.environ.get("HOSTPANEL_TEST_REDIS_URL")
    if given and binds == ("127.0.0.1",):
        yield given
        return
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; `make install` installs it")
        pytest.skip("needs redis-server (`make install`)")
    port, password = free_port(), secrets.token_hex(32)
    config = directory / "redis.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'port {port}\nbind {" ".join(binds)}\ndir {directory}\nsave ""\nrequirepass {password}\n')
    proc = subprocess.Popen([server, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis_ping(port, password) == b"+PONG", 10, "redis-server to answer")
        yield f"redis://:{password}@{binds[0]}:{port}/0"
    finally:
        stop_process(proc, timeout=10)


def redis_ping(port: int, password: str | None = None) -> bytes:
    """What Redis on 127.0.0.1:``port`` answers to PING (after AUTH with ``password``), b"" if nothing."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            if password is not None:
                s.sendall(f"AUTH {password}\r\n".encode())
                if not s.recv(64).startswith(b"+OK"):
                    return b"-AUTH failed"
            s.sendall(b"PING\r\n")
            return s.recv(64).strip()
    except OSError:
        return b""


@contextmanager
def celery_pointed_at(redis_url: str) -> Iterator[str]:
    """Point this process's Celery app (sending tasks, reading results) at ``redis_url``."""
    from hostpanel.celery import app

    def forget_connections() -> None:
        app._pool = None
        app._local = threading.local()  # holds the result backend
        app.amqp._producer_pool = None

    old = (app.conf.broker_url, app.conf.result_backend)
    app.conf.broker_url = app.conf.result_backend = redis_url
    forget_connections()
    try:
        yield redis_url
    finally:
        app.conf.broker_url, app.conf.result_backend = old
        forget_connections()


@dataclass
class Agent:
    """A host agent subprocess and its engine."""

    name: str
    engine: Engine
    root: Path
    instance: str
    proc: subprocess.Popen[bytes] | None
    log: Path
    env: dict[str, str]

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        args = [
            sys.executable,
            "manage.py",
            "hostagent",
            "--name",
            self.name,
            "--engine-root",
            str(self.root),
            "--instance",
            self.instance,
            "--address",
            "127.0.0.1",  # published ports are reached on this machine's loopback
            "--heartbeat-interval",
            "0.5",
            "--reconcile-interval",
            "1",
            "--usage-interval",
            "1",
            "--cpus",
            "4",
            "--memory",
            str(8 * 1024**3),
            "--loglevel",
            "INFO",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)

    def log_tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


def shared_database_url() -> str:
    """``DATABASE_URL`` of the test database this process uses, for the panel subprocesses it starts
    (agents, daphne, gunicorn): SQLite's test file, or PostgreSQL's ``test_<name>`` database that
    pytest-django made (tests/pgserver.py). Fails on an in-memory SQLite, which nobody else sees."""
    from django.db import connection

    params = connection.settings_dict
    name = str(params["NAME"])
    assert on_test_database(), f"{name} is not the test database"
    if params["ENGINE"] == "django.db.backends.sqlite3":
        assert "memory" not in name, "panel subprocesses need a file test database"
        return f"sqlite:///{name}"
    user = quote(params["USER"], safe="")
    if params["PASSWORD"]:
        user += ":" + quote(params["PASSWORD"], safe="")
    options = f"?{urlencode(params['OPTIONS'])}" if params.get("OPTIONS") else ""
    return f"postgres://{user}@{params['HOST']}:{params['PORT']}/{quote(name, safe='')}{options}"


def on_test_database() -> bool:
    """Whether this process's connection uses the test database (pytest-django switched it)."""
    from django.db import connection
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX

    params = connection.settings_dict
    if params["ENGINE"] == "django.db.backends.sqlite3":
        return str(params["NAME"]) == str(params["TEST"]["NAME"])
    return str(params["NAME"]).startswith(TEST_DATABASE_PREFIX)


def panel_env(database_url: str, redis_url: str, var_dir: Path, secret_keys: str) -> dict[str, str]:
    """The environment of a panel subprocess (agent, ASGI server) sharing the test's database
    (``database_url``: :func:`shared_database_url`)."""
    return os.environ | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HOSTPANEL_VAR_DIR": str(var_dir),
        "HOSTPANEL_SECRET_KEYS": secret_keys,
        "HOSTPANEL_HOST_GRACE_SECONDS": str(GRACE_SECONDS),
        "HOSTPANEL_RESTART_BACKOFF_BASE": "0.5",
    }


def launch_agent(name: str, workdir: Path, env: dict[str, str]) -> Agent:
    """Start host agent ``name`` with a fresh engine (root under ``workdir``, busybox bootstrapped)."""
    root = workdir / f"engine-{name}"
    instance = f"hpe2e-{secrets.token_hex(3)}"
    engine = Engine(root=root, instance=instance)
    engine.images.bootstrap_busybox()
    agent = Agent(name, engine, root, instance, None, workdir / f"agent-{name}.log", env)
    agent.start()
    return agent


def remove_agent_leftovers(agent: Agent) -> None:
    """After ``agent`` stopped: remove its containers, networks, volumes and stray mounts."""
    for container in agent.engine.list(all=True):
        agent.engine.remove(container.id, force=True)
    for network in agent.engine.network_list():
        agent.engine.network_remove(network.name)
    for volume in agent.engine.volume_list():
        agent.engine.volume_remove(volume.name, force=True)
    assert agent.engine.list(all=True) == []
    unmount_below(agent.root)  # what a create killed with its agent leaves (an engine gap, reported)


def unmount_below(root: Path) -> None:
    """Lazily unmount whatever is still mounted below ``root``, deepest first."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(f"{root}/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@dataclass
class Caddy:
    """A real Caddy (Debian's), its admin API on a private unix socket; the host agent configures it."""

    admin_socket: Path
    data_dir: Path
    http_port: int
    https_port: int
    log: Path
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start ``caddy run`` (again: e.g. after a crash) with only its admin API; wait for it."""
        from hostpanel.edge.caddy import CaddyAdmin, CaddyError

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)

        def answers() -> bool:
            try:
                CaddyAdmin(self.admin_socket, timeout=1).config()
            except CaddyError:
                return False
            return True

        wait_for(answers, 20, f"caddy's admin API\n{self.log}")

    def agent_env(self, panel_url: str = "http://127.0.0.1:9") -> dict[str, str]:
        """What a host agent needs to configure this Caddy (``panel_url``: ask endpoint, tokens)."""
        return {
            "HOSTPANEL_CADDY_ADMIN": str(self.admin_socket),
            "HOSTPANEL_CADDY_DATA": str(self.data_dir),
            "HOSTPANEL_PROXY_HTTP_PORT": str(self.http_port),
            "HOSTPANEL_PROXY_HTTPS_PORT": str(self.https_port),
            "HOSTPANEL_PROXY_BIND": "127.0.0.1",
            "HOSTPANEL_EDGE_PANEL_URL": panel_url,
        }

    @property
    def root_cert(self) -> Path:
        """The internal CA's root (exists once Caddy made its first certificate authority)."""
        from hostpanel.edge.caddy import internal_root_cert

        return internal_root_cert(self.data_dir)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def caddy_server(directory: Path) -> Iterator[Caddy]:
    """Start ``caddy run`` with only its admin API (unix socket in a 0700 dir), as `make run` does.

    Its data, autosave and home are under ``directory``; the proxy ports are free ones the
    agent's config will listen on (127.0.0.1 only).
    """
    binary = shutil.which("caddy")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("caddy is missing; `make install` installs it")
        pytest.skip("needs caddy (`make install`)")
    directory.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="hpcaddy-"))  # 0700; short: a socket path has <= 107 bytes
    admin_socket = run_dir / "admin.sock"
    boot = directory / "boot.json"
    boot.write_text(f'{{"admin": {{"listen": "unix/{admin_socket}", "config": {{"persist": false}}}}}}')
    env = os.environ | {
        "HOME": str(directory),
        "XDG_CONFIG_HOME": str(directory / "config"),
        "XDG_DATA_HOME": str(directory / "xdg-data"),
    }
    command = [binary, "run", "--config", str(boot)]
    caddy = Caddy(
        admin_socket, directory / "data", free_port(), free_port(), directory / "caddy.log", command, env
    )
    try:
        caddy.start()
        yield caddy
    finally:
        stop_process(caddy.proc, timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)


# ---- the panel and its enrolled agents, which hold no database (issue 15) ------------------
PANEL_ONLY = ("DATABASE_URL", "REDIS_URL", "HOSTPANEL_SECRET_KEY")  # never in a joined agent's environment
AGENT_ARGS = ("--usage-interval", "1", "--loglevel", "INFO")  # after joined_agent_args: usage every second


@dataclass
class Panel:
    """A panel subprocess serving the internal API the agents call: ``url`` is its HTTPS front
    (trusting ``ca_file``) or, without TLS, its own loopback address (``ca_file`` None)."""

    url: str
    ca_file: Path | None
    env: dict[str, str]
    log: Path


def https_get(url: str, ca_file: Path | None, token: str = "") -> tuple[int, dict[str, Any]]:
    """GET ``url`` (bearer ``token``; HTTPS trusting ``ca_file``): the status and the JSON answer
    (0 and {} when nothing answers)."""
    import json
    import ssl
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=10, context=context
        ) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode(errors="replace")}
    except (urllib.error.URLError, OSError):
        return 0, {}


@contextmanager
def serve_panel(
    directory: Path,
    settings: Any,
    redis_url: str,
    address: str = "127.0.0.1",
    agent_redis: str = "",
    tls: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Panel]:
    """The real panel sharing the test database, its var directory ``directory/var``; this
    process's settings point at the same Redis (the panel's own user: full access).

    ``tls``: `python -m hostpanel.serve` behind an HTTPS Caddy with its own CA on ``address`` (as
    in production; this process's public URL is set to it). Without: one daphne on loopback, which
    agents join with the join command's TESTS-ONLY ``--insecure-http`` (cheaper: one process).
    ``agent_redis``: the Redis address agents are told to use (HOSTPANEL_AGENT_REDIS_ADDRESS);
    ``env``: settings of the panel's own (e.g. a roll's drain, a dead host's grace)."""
    from bench.enroll import tls_front

    if tls and shutil.which("caddy") is None:
        pytest.fail("caddy is missing; `make install` installs it")
    given = env or {}
    env = panel_env(shared_database_url(), redis_url, directory / "var", settings.HOSTPANEL_SECRET_KEYS)
    env |= {"HOSTPANEL_HTTP_WORKERS": "1", "HOSTPANEL_CADDY_ADMIN": ""}
    env |= {"HOSTPANEL_ALLOWED_HOSTS": f"127.0.0.1,localhost,{address}"}
    env |= {"HOSTPANEL_AGENT_REDIS_ADDRESS": agent_redis} if agent_redis else {}
    env |= given
    port = free_port()
    log = directory / "panel.log"
    front, ca_file = None, None
    if tls:
        server = start_panel("127.0.0.1", port, env, log)
        front, front_port, ca_file = tls_front(directory / "front", port, address)
        url = f"https://{address}:{front_port}"
        settings.HOSTPANEL_PUBLIC_URL = url
    else:
        server = start_daphne(["-b", address, "-p", str(port)], env, log)
        url = f"http://{address}:{port}"
    settings.REDIS_URL = redis_url
    settings.HOSTPANEL_AGENT_REDIS_ADDRESS = agent_redis
    layers = settings.CHANNEL_LAYERS  # every layer of the project's (live logs' lines too) on this Redis
    settings.CHANNEL_LAYERS = {alias: x | {"CONFIG": {"hosts": [redis_url]}} for alias, x in layers.items()}
    try:
        if ca_file is not None:
            front_log = directory / "front" / "front.log"
            wait_for(ca_file.exists, 30, f"caddy's internal CA\n{front_log}")
        wait_for(lambda: https_get(url + "/internal/v1/host", ca_file)[0] == 401, 60, f"the panel\n{log}")
        yield Panel(url, ca_file, env, log)
    finally:
        stop_process(front)
        stop_process(server)


@contextmanager
def watch_hosts(panel: Panel, interval: float = 0.5) -> Iterator[subprocess.Popen[bytes]]:
    """The panel's periodic host checks (`manage.py watchhosts`: dead hosts, drains, placement)
    in a subprocess with the panel's environment, as production runs them beside the panel."""
    with (panel.log.parent / "watchhosts.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "watchhosts", "--interval", str(interval)],
            cwd=REPO,
            env=panel.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def add_host(name: str) -> str:
    """`manage.py host add NAME` (in this process); the token of the join command it prints."""
    import re
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("host", "add", name, stdout=out)
    match = re.search(r"sh deploy/join.sh --panel \S+ --token (hpjoin_\S+)", out.getvalue())
    assert match, out.getvalue()
    return match.group(1)


def join(
    panel: Panel, token: str, state: Path, *extra: str, wait: bool = True, env: dict[str, str] | None = None
) -> Any:
    """The join command against ``panel`` (``extra``: its options, then ``--`` and the agent's):
    its completed run, or (``wait`` False) the running process (the agent it execs) and its log."""
    from bench.enroll import join_args

    args = join_args(panel.url, token, panel.ca_file or Path(), state, *extra)
    if panel.ca_file is None:  # a plain http:// panel on loopback (tests only)
        args[args.index("--ca-file") : args.index("--ca-file") + 2] = ["--insecure-http"]
    if wait:
        quiet = {k: v for k, v in panel.env.items() if k != "REDIS_URL"}
        return subprocess.run(args, cwd=REPO, env=quiet, capture_output=True, text=True, timeout=120)
    log = state.parent / f"{state.name}.log"
    with log.open("ab") as out:
        return subprocess.Popen(
            args, cwd=REPO, env=env or panel.env, stdout=out, stderr=subprocess.STDOUT
        ), log


def start_without_database(
    panel: Panel, name: str, tmp_path: Path, *agent_args: str, env: dict[str, str] | None = None
) -> Agent:
    """Host ``name`` added, its engine made, and its join command run until its agent says it runs
    with NO ``DATABASE_URL``, panel ``REDIS_URL`` nor the panel's ``HOSTPANEL_SECRET_KEY`` in its
    environment (asserted on the running process too), with secret keys that are not the panel's
    and a var directory of its own;
    ``agent_args`` follow joined_agent_args, ``env`` adds to its environment. The agent's ``env``
    holds its state directory, so ``agent.start()`` starts it again after a stop."""
    from cryptography.fernet import Fernet

    from bench.enroll import joined_agent_args

    token = add_host(name)
    root, instance = tmp_path / f"engine-{name}", f"hpnd-{secrets.token_hex(3)}"
    engine = Engine(root=root, instance=instance)
    engine.images.bootstrap_busybox()
    base = {k: v for k, v in panel.env.items() if k not in PANEL_ONLY}
    base["HOSTPANEL_SECRET_KEYS"] = Fernet.generate_key().decode()  # not the panel's: no decrypting here
    base["HOSTPANEL_VAR_DIR"] = str(tmp_path / f"var-{name}")  # nothing of the panel's var either
    base |= env or {}
    state = tmp_path / f"state-{name}"
    args = [*joined_agent_args(root, instance), *agent_args]
    proc, log = join(panel, token, state, "--foreground", "--", *args, wait=False, env=base)
    agent = Agent(name, engine, root, instance, proc, log, base)
    agent.env = base | {"HOSTPANEL_AGENT_STATE_DIR": str(state.resolve())}  # for a restart
    try:
        wait_for(lambda: "no database" in log.read_text(), 60, f"the agent to start\n{agent.log_tail()}")
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")  # the exec'd agent itself
        assert not [e for e in environ if e.startswith(tuple(f"{k}=".encode() for k in PANEL_ONLY))]
        assert b"HOSTPANEL_AGENT_STATE_DIR=" + str(state.resolve()).encode() in environ
    except BaseException:
        agent.stop()
        remove_agent_leftovers(agent)
        raise
    return agent
