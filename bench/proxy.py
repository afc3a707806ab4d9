"""The edge proxy's cost: requests/s and p50/p99 latency through Caddy vs the container directly.

Starts the panel stack (bench/panel_stack.py) with a real Caddy (tests/stack.py) that its
host agent configures, deploys a busybox ``httpd`` app with an ``http_port``, and loads it
with ``wrk`` (Debian's): straight at the replica's published port, then through Caddy by
its hostname (``Host: web-demo.localhost``) with one replica and with two. Needs root.

Usage: .venv/bin/python bench/proxy.py [--duration 10] [--connections 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table  # noqa: E402
from bench.panel_stack import PanelStack, panel_stack, wait_for  # noqa: E402
from tests.stack import caddy_server  # noqa: E402

HOSTNAME = "web-demo.localhost"
PAGE = "x" * 512  # a small static page
HTTPD = ["sh", "-c", f"mkdir -p /www && echo {PAGE} > /www/index.html && exec httpd -f -p 8080 -h /www"]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, host: str | None, args: argparse.Namespace) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms, non-2xx/3xx answers and socket errors."""
    cmd = [
        "wrk",
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        f"{args.duration}s",
        "--latency",
    ]
    if host:
        cmd += ["-H", f"Host: {host}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match is None:
            raise SystemExit(f"wrk printed no {percent}% latency:\n{out}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "socket_errors": errors,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def through_proxy_ok(port: int) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": HOSTNAME})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200 and PAGE in response.read().decode()
    except OSError:
        return False


def serving(panel: PanelStack, replicas: int) -> list[int]:
    """Wait until ``replicas`` containers of the app run; their published host ports."""

    def ports() -> list[int] | None:
        items = panel.api.call("GET", "/containers/")["results"]
        running = [i for i in items if i["app"] == "web" and i["state"] == "running"]
        found = [p["host_port"] for i in running for p in i["ports"]]
        return found if len(found) == replicas else None

    result: list[int] = wait_for(ports, 60, f"{replicas} running replicas", 0.2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    if shutil.which("wrk") is None or shutil.which("caddy") is None:
        raise SystemExit("needs wrk and caddy (apt-get install wrk caddy)")
    rows: list[list[str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="hpbench-caddy-") as caddy_dir,
        caddy_server(Path(caddy_dir)) as caddy,
        panel_stack("proxy", caddy.agent_env()) as panel,
    ):
        panel.api.call(
            "POST",
            "/apps/",
            {"name": "web", "image": "busybox:latest", "command": HTTPD, "http_port": 8080},
        )
        (direct_port,) = serving(panel, 1)
        wait_for(lambda: through_proxy_ok(caddy.http_port), 60, "the route through caddy", 0.2)
        proxy_url = f"http://127.0.0.1:{caddy.http_port}/"
        runs = [
            ("container directly (published port)", f"http://127.0.0.1:{direct_port}/", None, 1),
            ("through Caddy by hostname", proxy_url, HOSTNAME, 1),
        ]
        for label, url, host, replicas in runs:
            rows.append(row(label, replicas, wrk(url, host, args)))
        panel.api.call("POST", "/apps/web/scale/", {"replicas": 2})
        serving(panel, 2)
        wait_for(lambda: through_proxy_ok(caddy.http_port), 30, "the route", 0.2)
        wait_for(lambda: routed_replicas(panel) == 2, 30, "both replicas in the table", 0.2)
        rows.append(row("through Caddy by hostname", 2, wrk(proxy_url, HOSTNAME, args)))
    page = f"a {len(PAGE) + 1}-byte page from busybox httpd"
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {page}\n")
    print_table(["path", "replicas", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors"], rows)


def routed_replicas(panel: PanelStack) -> int:
    """How many targets the last published routing table has for the app's hostname."""
    found = panel.db.execute('select "table" from edge_publishedroutes').fetchone()
    return 0 if found is None else len(json.loads(found[0]).get("routes", {}).get(HOSTNAME, []))


def row(label: str, replicas: int, result: dict[str, float]) -> list[str]:
    return [
        label,
        str(replicas),
        f"{result['rps']:.0f}",
        f"{result['p50']:.2f}",
        f"{result['p99']:.2f}",
        str(int(result["non2xx"])),
        str(int(result["socket_errors"])),
    ]


if __name__ == "__main__":
    main()
