"""Agent fairness: tenant B's log tail and scale-up latency, idle and while tenant A loads the host agent.

Starts its own pieces in a scratch directory (bench/panel_stack.py): a
redis-server, the panel (daphne), one host agent (its control worker and its
build worker, ``HOSTPANEL_BUILD_SLOTS=3`` so that tenant A's fair share is two
builds), a SQLite database. Needs root (real containers).

Usage: .venv/bin/python bench/agent_fairness.py [--logs 40] [--scales 10]

Tenant B is the demo tenant, with an app ``web`` printing a line every 200 ms.
Measured through the REST API, as B's client sees it:

- log tail: ``GET /containers/<id>/logs/?tail=50`` (answered by the host agent);
- scale-up: ``POST /apps/web/scale/ {"replicas": 2}`` until the new container runs
  (scaled back to 1 between runs, not timed).

Three phases: idle; tenant A runs two endless builds (``RUN sleep 600``); and
the same plus tenant A's app with slow health checks (two replicas, a command
check that takes its whole 5 s timeout every 5 s). Prints p50/p99 in
milliseconds per phase and each p99's ratio to the idle p99 (goal: within 2x).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table  # noqa: E402
from bench.panel_stack import Api, PanelStack, panel_stack, wait_for  # noqa: E402

TICK = ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
ENDLESS = "FROM busybox\nRUN echo started; sleep 600\n"
SLOW_CHECK = {"command": ["sh", "-c", "sleep 5"], "timeout": 5, "interval": 5, "retries": 10}


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``samples``."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def measure(panel: PanelStack, replica_id: int, logs: int, scales: int) -> tuple[dict[str, list[float]], int]:
    """``logs`` log tails and ``scales`` scale-ups of tenant B, in milliseconds (after one of each
    untimed, so that the first phase does not pay for warming up), and how many log tails failed
    (a 503: the agent did not answer within the panel's 10 s; their time still counts)."""
    api = panel.api
    _scale_up_and_down(panel)
    tails, failed = [], 0
    for _ in range(logs):
        start = time.perf_counter()
        try:
            lines = api.call("GET", f"/containers/{replica_id}/logs/?tail=50")
            assert lines and lines[-1]["text"] == "tick", lines
        except urllib.error.HTTPError as exc:
            assert exc.code == 503, exc
            failed += 1
        tails.append((time.perf_counter() - start) * 1000)
        time.sleep(0.05)
    ups = [_scale_up_and_down(panel) for _ in range(scales)]
    return {"log tail": tails, "scale-up": ups}, failed


def _scale_up_and_down(panel: PanelStack) -> float:
    """Milliseconds from B's scale-up call to its new container running; then back to one replica."""
    start = time.perf_counter()
    panel.api.call("POST", "/apps/web/scale/", {"replicas": 2})
    wait_for(lambda: panel.running("demo-web-1"), 120, "B's second replica")
    took = (time.perf_counter() - start) * 1000
    panel.api.call("POST", "/apps/web/scale/", {"replicas": 1})
    wait_for(lambda: not panel.exists("demo-web-1"), 120, "B's second replica to go")
    return took


def tenant_a(panel: PanelStack) -> Api:
    """Tenant ``hog`` (made through the panel's services, as an admin would) and its owner's API."""
    panel.setup_django()
    from django.contrib.auth import get_user_model

    from hostpanel.audit.services import Actor
    from hostpanel.tenants import services as tenants

    users = get_user_model()
    admin = Actor(users.objects.get(username="admin"))
    owner = users.objects.create_user("hog-owner")
    tenant = tenants.create_tenant(admin, "hog", owner=owner)
    _, secret = tenants.create_token(Actor(owner), tenant, "bench")
    return Api(f"{panel.base}/api/v1/tenants/hog", secret)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=40, help="log tails per phase")
    parser.add_argument("--scales", type=int, default=10, help="scale-ups per phase")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    results: dict[str, tuple[dict[str, list[float]], int]] = {}
    with panel_stack("fairness", extra_env={"HOSTPANEL_BUILD_SLOTS": "3"}) as panel:
        api = panel.api
        api.call("POST", "/apps/", {"name": "web", "image": "busybox:latest", "command": TICK})
        wait_for(lambda: panel.running("demo-web-0"), 60, "B's app")
        replica_id = api.call("GET", "/containers/?app=web")["results"][0]["id"]
        time.sleep(1)  # a few lines to tail
        results["idle"] = measure(panel, replica_id, args.logs, args.scales)

        hog = tenant_a(panel)
        builds = [
            hog.call("POST", "/builds/", {"name": f"forever{i}:1", "dockerfile_text": ENDLESS})["id"]
            for i in range(2)
        ]

        def both_running() -> bool:
            return all(hog.call("GET", f"/builds/{pk}/")["status"] == "running" for pk in builds)

        wait_for(both_running, 120, "tenant A's two builds to run", 0.5)
        results["A: 2 endless builds"] = measure(panel, replica_id, args.logs, args.scales)

        slow = {"name": "slow", "image": "busybox:latest", "command": ["sleep", "3600"]}
        hog.call("POST", "/apps/", slow | {"replicas": 2, "health_check": SLOW_CHECK})
        wait_for(lambda: panel.running("hog-slow-1"), 120, "tenant A's slow app", 0.2)
        time.sleep(6)  # the first checks are due
        results["A: 2 builds + slow health checks"] = measure(panel, replica_id, args.logs, args.scales)
        assert both_running(), "tenant A's builds ended before the measurements did"

    idle = results["idle"][0]
    rows = []
    for phase, (samples, failed) in results.items():
        for op, values in samples.items():
            p99 = percentile(values, 99)
            rows.append(
                [
                    op,
                    phase,
                    str(len(values)),
                    str(failed) if op == "log tail" else "-",
                    f"{percentile(values, 50):.1f}",
                    f"{p99:.1f}",
                    f"{p99 / percentile(idle[op], 99):.2f}x",
                ]
            )
    rows.sort(key=lambda r: r[0])
    headers = ["tenant B operation", "host agent load", "runs", "503s", "p50 ms", "p99 ms", "p99 / idle p99"]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
