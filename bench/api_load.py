"""The panel's API under load: wrk at 16 connections, and live-log latency while it runs.

Starts the panel stack in a scratch directory (bench/panel_stack.py: redis-server, a
migrated SQLite database with the demo tenant and an API token, one host agent) once
per server mode:

- ``serve``: as `make run` serves it (hostpanel/serve.py: Caddy in front, gunicorn's
  gthread workers for HTTP, daphne for /ws/);
- ``daphne``: one daphne process for everything (the panel before issue 16).

In each: a ticker app (a line every 20 ms) runs; ``wrk -t2 -c16 --latency`` loads each
authenticated list endpoint (``Authorization: Token``) and ``/healthz`` for
``--seconds``; then headless Debian chromium (Playwright, the demo owner's session)
reads the ticker's log socket, idle and while wrk loads the apps list, and the
write -> browser latency (conmon's timestamp to the WebSocket message) is compared.
Needs root (real containers), wrk and chromium. Numbers are noisy on a shared machine.

Usage: .venv/bin/python bench/api_load.py [--seconds 10] [--modes serve,daphne] [--lines 150]
[--databases sqlite,postgres] (each mode and database runs in its own process and stack, one after
the other; ``postgres``: a private PostgreSQL 15 in the scratch directory, tests/pgserver.py)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table  # noqa: E402
from bench.log_latency import CHROMIUM, COLLECT, TICKER, _session, percentile  # noqa: E402
from bench.panel_stack import PanelStack, panel_stack, wait_for  # noqa: E402

ENDPOINTS = ["apps", "containers", "images", "volumes", "secrets", "members", "tokens", "audit"]
CONNECTIONS, THREADS = 16, 2
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def progress(what: str) -> None:
    print(f"[api_load] {what}", file=sys.stderr, flush=True)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def wrk_command(url: str, token: str | None, seconds: float) -> list[str]:
    """wrk at 16 connections on 2 threads with the latency distribution."""
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
    return [*command, "-H", f"Authorization: Token {token}"] if token else command


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, average and p99 latency (ms) and non-2xx answers from wrk's report."""
    average = re.search(r"^\s+Latency\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if not (average and p99 and rate):
        raise SystemExit(f"could not read wrk's report:\n{output}")
    return {
        "rps": float(rate.group(1)),
        "avg": _ms(average.group(1)),
        "p99": _ms(p99.group(1)),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def load(panel: PanelStack, seconds: float, endpoints: list[str]) -> list[tuple[str, dict[str, float]]]:
    """wrk against /healthz and each list endpoint, one after the other."""
    results = []
    targets = [("/healthz", None)] + [(f"/api/v1/tenants/demo/{name}/", panel.token) for name in endpoints]
    for path, token in targets:
        progress(f"wrk {path}")
        done = subprocess.run(
            wrk_command(panel.base + path, token, seconds), capture_output=True, text=True, check=True
        )
        results.append((path, parse_wrk(done.stdout)))
    return results


def socket_latency(
    panel: PanelStack, replica: int, lines: int, loaded_seconds: float
) -> dict[str, list[float]]:
    """Write -> browser latencies of ``lines`` ticker lines, idle and while wrk loads the apps list."""
    from playwright.sync_api import sync_playwright

    session = _session(panel)
    found: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            context = browser.new_context(base_url=panel.base)
            context.add_cookies([{"name": "sessionid", "value": session, "url": panel.base}])
            page = context.new_page()
            page.goto(panel.base + "/healthz")
            path = f"/ws/logs/{replica}/?tail=0"
            progress("log socket: idle")
            found["idle"] = collect(page, path, lines)
            url = f"{panel.base}/api/v1/tenants/demo/apps/"
            wrk = subprocess.Popen(
                wrk_command(url, panel.token, loaded_seconds), stdout=subprocess.PIPE, text=True
            )
            try:
                time.sleep(1)  # wrk's connections are up and the workers busy
                progress("log socket: while wrk loads the apps list")
                found["loaded"] = collect(page, path, lines)
            finally:
                report = wrk.communicate()[0]
            found["loaded_rps"] = [parse_wrk(report)["rps"]]
        finally:
            browser.close()
    return found


def collect(page: Any, path: str, lines: int) -> list[float]:
    """The latencies of ``lines`` log lines the page's socket on ``path`` receives."""
    got = page.evaluate(COLLECT, [path, lines, 0])
    if not got["latencies"]:
        raise SystemExit(f"the log socket {path} gave no lines: {got}")
    return list(got["latencies"])


def prepare(panel: PanelStack) -> int:
    """The demo tenant's objects the lists show (a running ticker app among them); its replica id."""
    api = panel.api
    api.call("POST", "/apps/", {"name": "ticker", "image": "busybox:latest", "command": TICKER})
    api.call("POST", "/secrets/", {"name": "key", "value": "value"})
    wait_for(lambda: panel.running("demo-ticker-0"), 60, "the ticker app", 0.1)
    row = wait_for(
        lambda: panel.db.execute(
            "select r.id from deployments_replica r join deployments_app a on r.app_id = a.id "
            "where a.name = 'ticker' and r.state = 'running'"
        ).fetchone(),
        60,
        "the ticker's replica",
        0.1,
    )
    return int(row[0])


def measure(mode: str, args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]]]:
    """The load rows and the socket row of one server mode (and database)."""
    web = {"HOSTPANEL_SECRET_KEY": os.urandom(30).hex(), "HOSTPANEL_DEBUG": "0"}
    loads = []
    progress(f"{mode}: starting the stack")
    with panel_stack(f"api-{mode}", web, server=mode, database=args.database) as panel:
        replica = prepare(panel)
        for path, r in load(panel, args.seconds, args.endpoints.split(",")):
            numbers = [f"{r['rps']:.0f}", f"{r['avg']:.1f}", f"{r['p99']:.1f}", f"{r['errors']:.0f}"]
            loads.append([mode, args.database, path, *numbers])
        loaded_seconds = 1 + args.lines * 0.02 * 3  # outlasts the sample
        latency = socket_latency(panel, replica, args.lines, loaded_seconds)
    idle, loaded = latency["idle"], latency["loaded"]
    socket_row = [
        mode,
        args.database,
        f"{percentile(idle, 0.5):.1f}",
        f"{percentile(idle, 0.99):.1f}",
        f"{percentile(loaded, 0.5):.1f}",
        f"{percentile(loaded, 0.99):.1f}",
        f"{latency['loaded_rps'][0]:.0f}",
    ]
    return loads, [socket_row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk's duration per endpoint")
    parser.add_argument("--modes", default="serve,daphne", help="server modes to measure, in order")
    parser.add_argument("--lines", type=int, default=150, help="log lines per latency sample (20 ms apart)")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS), help="list endpoints of the demo tenant")
    parser.add_argument(
        "--databases", default="sqlite", help="sqlite,postgres: the panel's database(s), each its own stack"
    )
    parser.add_argument("--database", help=argparse.SUPPRESS)  # one run's, from --databases
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (one mode)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (`make install`)")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (`make install`)")
    modes, databases = args.modes.split(","), args.databases.split(",")
    if len(modes) > 1 or len(databases) > 1:  # one process per run: Django is set up once per process
        loads, sockets = [], []
        for mode, database in [(m, d) for d in databases for m in modes]:
            argv = [sys.executable, __file__, "--modes", mode, "--json", "--seconds", str(args.seconds)]
            argv += ["--lines", str(args.lines), "--endpoints", args.endpoints, "--database", database]
            output = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout
            rows = json.loads(output.strip().splitlines()[-1])  # the last line: the rows
            loads += rows["loads"]
            sockets += rows["sockets"]
    else:
        args.database = args.database or databases[0]
        loads, sockets = measure(modes[0], args)
        if args.json:
            print(json.dumps({"loads": loads, "sockets": sockets}))
            return
    print_table(["server", "database", "endpoint", "req/s", "avg ms", "p99 ms", "non-2xx"], loads)
    print()
    print_table(
        [
            "server",
            "database",
            "log p50 idle ms",
            "log p99 idle ms",
            "log p50 loaded ms",
            "log p99 loaded ms",
            "apps req/s meanwhile",
        ],
        sockets,
    )


if __name__ == "__main__":
    main()
