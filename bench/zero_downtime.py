"""Ten consecutive deploys of an HTTP app under constant load through the edge proxy (Caddy).

The whole panel stack (bench/panel_stack.py) plus a real Caddy that the host
agent configures; the demo tenant's app ``web`` is busybox httpd serving its
version at ``/`` on port 8080, reached by hostname through Caddy. A steady load
(``--threads`` clients sending GETs back to back, a new connection each) runs
for ``--steady`` seconds, then through ``--deploys`` deploys, each waited for, in
two ways on two fresh apps:

- ``rolling``: the panel's deploy (``POST .../deploy/``): a new replica starts,
  becomes ready, takes over, the old one drains (``HOSTPANEL_ROLL_DRAIN_SECONDS``,
  3 s here, above Caddy's 1 s refresh) and stops;
- ``stop-then-start``: what a naive panel does: stop the app, deploy the new
  release, start it again (``POST .../stop/``, ``.../deploy/``, ``.../start/``).

It prints requests, failed requests, p50/p99 in steady state and during the
deploys, the longest time without a successful answer, and the deploys' total
time. Needs root (real containers) and caddy.
The app takes ``--boot`` seconds (3) before it listens, as real apps do; Caddy
itself retries a refused connection for 2 s (the edge's config), which hides
restarts shorter than that.
Run: ``.venv/bin/python bench/zero_downtime.py [--deploys 10] [--replicas 1] [--boot 3]``.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from bench.panel_stack import PanelStack, panel_stack, wait_for
from tests.loadgen import Load, Sample, percentile, private_port_range
from tests.stack import caddy_server

PORT = 8080
# serves "$V" at / after "$BOOT" seconds of start-up (as a real app takes a moment before it listens)
HTTPD = [
    "sh",
    "-c",
    f'sleep "$BOOT" && mkdir -p /www && echo "$V" > /www/index.html && exec httpd -f -p {PORT} -h /www',
]


def answer(load: Load, url: str) -> str:
    sample = load.get(url)
    return sample.body if sample.ok else ""


def rolled(stack: PanelStack, app: str, version: int) -> bool:
    body = stack.api.call("GET", f"/apps/{app}/")
    roll = body["rollout"]
    if roll is None or roll["release"] != version or roll["state"] == "rolling":
        return False
    if roll["state"] != "succeeded":
        raise SystemExit(f"the roll to v{version} {roll['state']}: {roll['message']}")
    return True


def run(stack: PanelStack, caddy_port: int, app: str, how: str, args: argparse.Namespace) -> list[str]:
    """Create ``app``, load it, deploy it ``args.deploys`` times ``how``; one table row."""
    spec: dict[str, Any] = {"name": app, "image": "busybox:latest", "command": HTTPD, "http_port": PORT}
    boot = f"{args.boot:g}"
    stack.api.call("POST", "/apps/", spec | {"env": {"V": "v1", "BOOT": boot}, "replicas": args.replicas})
    hostname, url = f"{app}-demo.localhost", f"http://127.0.0.1:{caddy_port}/"
    load = Load(lambda: url, host=hostname, threads=args.threads)
    wait_for(lambda: answer(load, url) == "v1", 90, f"{app} v1 through caddy", 0.2)
    load.start()
    time.sleep(args.steady)
    began = time.monotonic()
    for n in range(2, args.deploys + 2):
        if how == "rolling":
            stack.api.call("POST", f"/apps/{app}/deploy/", {"env": {"V": f"v{n}", "BOOT": boot}})
            wait_for(lambda n=n: rolled(stack, app, n), 120, f"the roll to v{n}", 0.2)  # type: ignore[misc]
        else:
            stack.api.call("POST", f"/apps/{app}/stop/")
            wait_for(lambda: stopped(stack, app), 60, f"{app} to stop", 0.1)
            stack.api.call("POST", f"/apps/{app}/deploy/", {"env": {"V": f"v{n}", "BOOT": boot}})
            stack.api.call("POST", f"/apps/{app}/start/")
        wait_for(lambda n=n: answer(load, url) == f"v{n}", 120, f"v{n} to answer", 0.1)  # type: ignore[misc]
    ended = time.monotonic()
    time.sleep(1.0)
    samples = load.stop()
    stack.api.call("DELETE", f"/apps/{app}/")
    steady = [s for s in samples if s.at < began]
    during = [s for s in samples if began <= s.at <= ended]
    return [
        how,
        str(args.deploys),
        str(len(during)),
        str(len(failed(during))),
        _ms(steady, 0.5),
        _ms(steady, 0.99),
        _ms(during, 0.5),
        _ms(during, 0.99),
        f"{longest_gap(during):.2f}",
        f"{ended - began:.1f}",
    ]


def stopped(stack: PanelStack, app: str) -> bool:
    replicas = stack.api.call("GET", f"/apps/{app}/")["replicas"]
    return all(r["state"] == "stopped" for r in replicas)


def longest_gap(samples: list[Sample]) -> float:
    """The longest time (s) with no successful answer arriving: what users saw as an outage."""
    done = sorted(s.at + s.seconds for s in samples if s.ok)
    return max((b - a for a, b in itertools.pairwise(done)), default=0.0)


def failed(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if not s.ok]


def _ms(samples: list[Sample], q: float) -> str:
    ok = [s.seconds * 1000 for s in samples if s.ok]
    return f"{percentile(ok, q):.1f}" if ok else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4, help="clients sending requests back to back")
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of load before the deploys")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--boot", type=float, default=3.0, help="seconds the app takes before it listens")
    args = parser.parse_args()
    agent_args = ["--cpus", "8", "--address", "127.0.0.1"]
    with tempfile.TemporaryDirectory(prefix="hpbench-caddy-") as tmp, caddy_server(Path(tmp)) as caddy:
        roll = {
            "HOSTPANEL_ROLL_DRAIN_SECONDS": "3",
            "HOSTPANEL_ROLL_DEADLINE_SECONDS": "60",
            "HOSTPANEL_LOG_LEVEL": "INFO",
            # host ports of our own: other stacks on this machine publish from the default range
            "HOSTPANEL_PORT_RANGE": private_port_range(),
        }
        with panel_stack("zero", extra_env=caddy.agent_env() | roll, agent_args=agent_args) as stack:
            try:
                rows = [run(stack, caddy.http_port, f"web{i}", how, args) for i, how in enumerate(args.modes)]
            except BaseException:
                kept = Path(tempfile.mkdtemp(prefix="hpbench-zero-logs-"))
                for log in (stack.scratch / "agent.log", caddy.log):
                    shutil.copy(log, kept / log.name)
                print(f"failed; the agent's and caddy's logs are in {kept}", file=sys.stderr)
                raise
    print(
        f"\n{args.deploys} deploys of {args.replicas} replica(s) of busybox httpd ({args.boot:g} s to start) "
        f"through Caddy, {args.threads} clients (a new connection per request)\n"
    )
    print_table(
        [
            "deploy",
            "deploys",
            "requests during",
            "failed",
            "steady p50 ms",
            "steady p99 ms",
            "during p50 ms",
            "during p99 ms",
            "longest gap s",
            "deploys took s",
        ],
        rows,
    )


MODES = ("rolling", "stop-then-start")

if __name__ == "__main__":
    main()
