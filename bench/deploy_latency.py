"""Deploy latency through the panel: API call to running container, and listing 1,000 containers.

Starts its own pieces in a scratch directory: a redis-server, the panel
(daphne), one host agent (Celery worker) on a scratch engine root, a SQLite
database. Needs root (real containers).

Usage: .venv/bin/python bench/deploy_latency.py [--runs 20]
Prints min/median/p95 in milliseconds: the engine's own ``run`` (the floor),
``POST /apps/`` until the container runs (cached image), and ``GET
/containers/?page_size=1000`` with 1,000 containers in the database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table, summary, timed  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.runtime.model import ContainerSpec  # noqa: E402

SLEEP = ["sh", "-c", "sleep 3600"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    scratch = Path(tempfile.mkdtemp(prefix="hpbench-deploy-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    scratch.chmod(0o755)
    redis_port, http_port = free_port(), free_port()
    root, instance = scratch / "engine", f"hpbd-{secrets.token_hex(3)}"
    from cryptography.fernet import Fernet

    env = os.environ | {
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HOSTPANEL_VAR_DIR": str(scratch / "var"),
        "HOSTPANEL_SECRET_KEYS": Fernet.generate_key().decode(),
        "HOSTPANEL_LOG_LEVEL": "WARNING",
    }
    python = sys.executable
    engine = Engine(root=root, instance=instance)
    engine.images.bootstrap_busybox()
    rows = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        stack.callback(lambda: [engine.remove(c.id, force=True) for c in engine.list(all=True)])
        redis = [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--save", ""]
        stack.enter_context(process([*redis, "--bind", "127.0.0.1"], env, scratch / "redis.log"))
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
        seeded = subprocess.run(
            [python, "manage.py", "seed_demo", "--token"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        token = next(w for w in seeded.split() if w.startswith("hp_"))
        agent = [
            python,
            "manage.py",
            "hostagent",
            "--name",
            "bench",
            "--engine-root",
            str(root),
            "--instance",
            instance,
        ]
        stack.enter_context(process([*agent, "--loglevel", "WARNING"], env, scratch / "agent.log"))
        daphne = [
            str(Path(python).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(http_port),
            "hostpanel.asgi:application",
        ]
        stack.enter_context(process(daphne, env, scratch / "daphne.log"))
        db = sqlite3.connect(scratch / "db.sqlite3", timeout=30)
        wait_for(
            lambda: db.execute("select 1 from hosts_host where state='up'").fetchone(), 60, "the agent", 0.2
        )
        api = Api(f"http://127.0.0.1:{http_port}/api/v1/tenants/demo", token)
        wait_for(lambda: _answers(api), 30, "the panel", 0.2)

        def engine_run() -> None:
            c = engine.run(ContainerSpec(image="busybox", command=tuple(SLEEP), tenant="demo"))
            engine.remove(c.id, force=True)

        rows.append(["engine.run (no panel, the floor)", *_fmt(summary(timed(engine_run, args.runs)))])

        deploys = []
        for i in range(args.runs):
            name = f"b{i}"
            start = time.perf_counter()
            api.call("POST", "/apps/", {"name": name, "image": "busybox:latest", "command": SLEEP})
            wait_for(lambda n=name: _running(engine, f"demo-{n}-0"), 60, f"app {name}")
            deploys.append((time.perf_counter() - start) * 1000)
            api.call("DELETE", f"/apps/{name}/")
            wait_for(lambda n=name: not _exists(engine, f"demo-{n}-0"), 60, f"app {name} to go")
        rows.append(["POST /apps/ -> container running", *_fmt(summary(deploys))])

        _fake_containers(env, 1000)
        listing = timed(lambda: api.call("GET", "/containers/?page_size=1000"), 10)
        count = api.call("GET", "/containers/?page_size=1")["count"]
        rows.append([f"GET /containers/ ({count} containers, one page)", *_fmt(summary(listing))])
    print_table(["operation", "min ms", "median ms", "p95 ms"], rows)


def _answers(api: Api) -> bool:
    try:
        api.call("GET", "/apps/")
        return True
    except OSError:
        return False


def _running(engine: Engine, name: str) -> bool:
    return any(c.name == name and c.is_running for c in engine.list())


def _exists(engine: Engine, name: str) -> bool:
    return any(c.name == name for c in engine.list(all=True))


def _fmt(stats: tuple[float, float, float]) -> list[str]:
    return [f"{v:.1f}" for v in stats]


def _fake_containers(env: dict[str, str], n: int) -> None:
    """An app with ``n`` replica rows on a host that is down (rows only: what the listing costs).

    A down host is neither scheduled onto nor reconciled, so the rows stay put.
    Made through the ORM (this process points Django at the bench's database).
    """
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "HOSTPANEL_VAR_DIR", "HOSTPANEL_SECRET_KEYS")}
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")
    import django

    django.setup()
    from hostpanel.deployments.models import App, Release, Replica
    from hostpanel.hosts.models import Host
    from hostpanel.tenants.models import Tenant

    tenant = Tenant.objects.get(slug="demo")
    host = Host.objects.create(name="listing", cpu_millis=1, memory_bytes=1, state=Host.State.DOWN)
    app = App.objects.create(tenant=tenant, name="listing", state=App.State.STOPPED)
    release = Release.objects.create(app=app, version=1, image="busybox:latest", replicas=n)
    App.objects.filter(pk=app.pk).update(current_release=release)
    Replica.objects.bulk_create(
        Replica(
            app=app,
            release=release,
            host=host,
            index=i,
            state=Replica.State.STOPPED,
            container_name=f"demo-listing-{i}",
        )
        for i in range(n)
    )


if __name__ == "__main__":
    main()
