"""Deploy latency through the panel: API call to running container, and listing 1,000 containers.

Starts its own pieces in a scratch directory (bench/panel_stack.py): a
redis-server, the panel (daphne), one host agent (Celery worker) on a scratch
engine root, a SQLite database. Needs root (real containers).

Usage: .venv/bin/python bench/deploy_latency.py [--runs 20]
Prints min/median/p95 in milliseconds: the engine's own ``run`` (the floor),
``POST /apps/`` until the container runs (cached image), and ``GET
/containers/?page_size=1000`` with 1,000 containers in the database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table, summary_cells, timed  # noqa: E402
from bench.panel_stack import PanelStack, panel_stack, wait_for  # noqa: E402
from engine.runtime.model import ContainerSpec  # noqa: E402

SLEEP = ["sh", "-c", "sleep 3600"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    rows = []
    with panel_stack("deploy") as panel:
        engine, api = panel.engine, panel.api

        def engine_run() -> None:
            c = engine.run(ContainerSpec(image="busybox", command=tuple(SLEEP), tenant="demo"))
            engine.remove(c.id, force=True)

        rows.append(["engine.run (no panel, the floor)", *summary_cells(timed(engine_run, args.runs))])

        deploys = []
        for i in range(args.runs):
            name = f"b{i}"
            start = time.perf_counter()
            api.call("POST", "/apps/", {"name": name, "image": "busybox:latest", "command": SLEEP})
            wait_for(lambda n=name: panel.running(f"demo-{n}-0"), 60, f"app {name}")
            deploys.append((time.perf_counter() - start) * 1000)
            api.call("DELETE", f"/apps/{name}/")
            wait_for(lambda n=name: not panel.exists(f"demo-{n}-0"), 60, f"app {name} to go")
        rows.append(["POST /apps/ -> container running", *summary_cells(deploys)])

        _fake_containers(panel, 1000)
        listing = timed(lambda: api.call("GET", "/containers/?page_size=1000"), 10)
        count = api.call("GET", "/containers/?page_size=1")["count"]
        rows.append([f"GET /containers/ ({count} containers, one page)", *summary_cells(listing)])
    print_table(["operation", "min ms", "median ms", "p95 ms"], rows)


def _fake_containers(panel: PanelStack, n: int) -> None:
    """An app with ``n`` replica rows on a host that is down (rows only: what the listing costs).

    A down host is neither scheduled onto nor reconciled, so the rows stay put.
    Made through the ORM (this process points Django at the bench's database).
    """
    panel.setup_django()
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
