"""CPU per request of the API's authenticated list endpoints, in process (issue 16).

The wall-clock figures of bench/api_load.py move with whatever else runs on the machine;
the CPU a request costs the panel's process does not (much). This bench migrates a fresh
SQLite database (or ``--database postgres``: a private PostgreSQL 15, tests/pgserver.py) in
a scratch directory, seeds the demo tenant as ``manage.py seed_demo --token`` does, plus a
realistic handful of objects (``--apps`` apps of two replicas, each deployed twice, secrets,
volumes, members, tokens, and the audit entries all that wrote), then calls the WSGI
application the way gunicorn does (``hostpanel.wsgi``'s handler, the response iterated and
closed) with ``Authorization: Token``, and reports ``time.process_time()`` per request: the
median of ``--rounds`` rounds of ``--requests`` requests after a warm-up, per endpoint.
Nothing is sent to Redis or a host (the seeding's dispatch seams are replaced by no-ops).
The tenant lists are answered from their kept answers as served (hostpanel/api/answer_cache.py,
kept_lists.py: one query for the list's generation); ``HOSTPANEL_API_CACHE_SECONDS=0`` in the
environment measures building them every time.

Usage: .venv/bin/python bench/api_cpu.py [--requests 300] [--rounds 5] [--apps 5]
[--endpoints apps,containers,...] [--database sqlite|postgres] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ENDPOINTS = ["apps", "containers", "images", "volumes", "secrets", "members", "tokens", "audit", "builds"]


@contextmanager
def database(kind: str, scratch: Path) -> Iterator[str]:
    """The DATABASE_URL of a fresh database of ``kind`` in ``scratch``."""
    if kind == "sqlite":
        yield f"sqlite:///{scratch / 'db.sqlite3'}"
        return
    from tests.pgserver import PostgresServer

    server = PostgresServer(scratch / "postgres")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def setup_django(url: str, scratch: Path) -> None:
    """Django configured as the panel's gunicorn workers are (DEBUG off), on ``url``."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "hostpanel.settings",
            "DATABASE_URL": url,
            "HOSTPANEL_VAR_DIR": str(scratch),
            "HOSTPANEL_DEBUG": "0",
            "HOSTPANEL_SECRET_KEY": os.urandom(30).hex(),
            "REDIS_URL": "redis://:unused@127.0.0.1:1/0",  # never reached: the seams below
        }
    )
    import django

    django.setup()


def seed(apps: int) -> str:
    """The demo tenant with ``apps`` apps and a handful of everything; the demo owner's token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from hostpanel.audit.services import Actor
    from hostpanel.deployments import services as deployments
    from hostpanel.edge import dispatch as edge_dispatch
    from hostpanel.hosts import dispatch as host_dispatch
    from hostpanel.hosts.models import Host
    from hostpanel.images.models import Image
    from hostpanel.secrets import services as secrets
    from hostpanel.tenants import services as tenants
    from hostpanel.tenants import watch
    from hostpanel.tenants.models import Membership, Role, Tenant
    from hostpanel.volumes.models import Volume

    host_dispatch.send_reconcile = lambda *a, **k: None  # type: ignore[assignment]
    host_dispatch.send_purge_tenant = lambda *a, **k: None  # type: ignore[assignment]
    edge_dispatch.send_routes = lambda *a, **k: None  # type: ignore[assignment]
    watch.notify_user = lambda *a, **k: None  # type: ignore[assignment]

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    call_command("seed_demo", "--token", stdout=out)
    token = next(w for w in out.getvalue().split() if w.startswith("hp_"))
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    Host.objects.create(
        name="h1",
        cpu_millis=8000,
        memory_bytes=16 * 1024**3,
        state=Host.State.UP,
        address="10.0.0.1",
        last_heartbeat=timezone.now(),
    )
    tenant = Tenant.objects.get(slug="demo")
    owner = Actor(user=Membership.objects.get(tenant=tenant, role=Role.OWNER).user)
    for i in range(apps):
        spec = deployments.AppSpec(
            image="busybox:latest",
            command=["sleep", "3600"],
            replicas=2,
            env={"GREETING": "héllo wörld ✓", "N": str(i)},
            ports=[{"container_port": 8000 + i, "protocol": "tcp"}] if i % 2 else [],
        )
        app = deployments.create_app(owner, tenant, f"app{i}", spec)
        deployments.deploy(owner, app, env={"GREETING": "second", "N": str(i)})
    for i in range(4):
        secrets.create_secret(owner, tenant, f"key{i}", "value")
        Volume.objects.create(tenant=tenant, name=f"data{i}", size_bytes=2**30)
        Image.objects.create(tenant=tenant, reference=f"demo/app{i}:1")
    User = get_user_model()
    for i in range(3):
        user = User.objects.create(username=f"viewer{i}")
        Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
        tenants.create_token(Actor(user=user), tenant, f"ci{i}")
    return token


def wsgi_get(application: Callable[..., Any], path: str, token: str) -> int:
    """One GET through the WSGI application as gunicorn makes it; the status code."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "HTTP_ACCEPT": "*/*",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status: list[str] = []
    body = application(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        for _ in body:
            pass
    finally:
        body.close()
    return int(status[0].split()[0])


def cpu_per_request(
    application: Callable[..., Any], path: str, token: str, requests: int, rounds: int
) -> float:
    """The median over ``rounds`` of the CPU milliseconds per request of ``requests`` GETs."""
    for _ in range(max(20, requests // 5)):  # warm-up: imports, the URL resolver, the token cache
        code = wsgi_get(application, path, token)
        if code != 200:
            raise SystemExit(f"GET {path} answered {code}")
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests):
            wsgi_get(application, path, token)
        samples.append((time.process_time() - start) * 1000 / requests)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per endpoint (the median is shown)")
    parser.add_argument("--apps", type=int, default=5, help="apps of the demo tenant (two replicas each)")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS), help="list endpoints of the demo tenant")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", action="store_true", help="print {endpoint: ms} as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="api-cpu-") as tmp, database(args.database, Path(tmp)) as url:
        setup_django(url, Path(tmp))
        token = seed(args.apps)
        from django.core.wsgi import get_wsgi_application

        application = get_wsgi_application()
        results = {
            name: cpu_per_request(
                application, f"/api/v1/tenants/demo/{name}/", token, args.requests, args.rounds
            )
            for name in args.endpoints.split(",")
        }
        from django.db import connections

        connections.close_all()
    if args.json:
        print(json.dumps(results))
        return
    from bench.common import print_table

    print_table(
        ["endpoint", "CPU ms/request"],
        [[f"/api/v1/tenants/demo/{n}/", f"{ms:.2f}"] for n, ms in results.items()],
    )


if __name__ == "__main__":
    main()
