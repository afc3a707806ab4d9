"""Multi-service stacks: sections of measurements, each printing its own table.

Usage: .venv/bin/python bench/stack.py [--runs 5] [--sections compose_up,...]

Sections (add yours: a function ``section_<name>(bench: StackBench) -> None`` that prints one
table, listed in :data:`SECTIONS`; ``StackBench`` starts shared pieces on first use):

- ``compose_up``: wall time of ``up -d`` of the same five-service compose file (a shared
  network, a named volume, depends_on chains, environment, a tmpfs) three ways: ``hpctl
  compose up -d`` on a scratch engine; Debian's ``docker-compose`` 1.29 against HostPanel's
  operator Docker API socket (``hpctl docker serve`` over the same scratch engine); the same
  ``docker-compose`` against dockerd (Debian's ``docker.io``, started as bench/docker_api.py
  does: its own roots, no bridge, no iptables rules). Each run starts from nothing (``down -v``
  between runs, not timed); runs go round-robin over the three. Ratios are to hpctl.
- ``panel_up``: the same file with a 1 s health check per service, ``POST /stacks/`` through the
  whole panel (bench/panel_stack.py: daphne, Redis, one host agent) until every service runs and
  until every one is healthy, beside ``docker-compose up -d`` on the operator socket.
- ``panel_resolve``: a redeploy that changes one service: from ``PUT /stacks/`` until its name
  resolves to its new container in another service's (untouched) container. One host only.

Everything started is stopped afterwards (bench/docker_api.py's clean-up).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, summary
from bench.docker_api import (
    Target,
    _tail,
    bench_workdir,
    docker_archive,
    dockerd,
    hostpanel,
    scratch,
)
from engine.engine import Engine
from engine.runtime.model import ExecSpec

REPO = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

FIVE_SERVICES = """\
services:
  db:
    image: busybox
    command: ["sleep", "3600"]
    init: true
    volumes: [dbdata:/data]
    environment: {ROLE: db}
  cache:
    image: busybox
    command: ["sleep", "3600"]
    init: true
    volumes: [{type: tmpfs, target: /scratch}]
  api:
    image: busybox
    command: ["sleep", "3600"]
    init: true
    depends_on: [db, cache]
    environment: {ROLE: api, DB: db}
  worker:
    image: busybox
    command: ["sleep", "3600"]
    init: true
    depends_on: [db]
  web:
    image: busybox
    command: ["sleep", "3600"]
    init: true
    depends_on: [api]
    environment: {ROLE: web}
volumes:
  dbdata: {}
"""


class StackBench:
    """Shared pieces for the sections: a scratch engine, its operator socket, dockerd."""

    def __init__(self, stack: ExitStack, workdir: Path, runs: int) -> None:
        self.stack = stack
        self.workdir = workdir
        self.runs = runs
        self._engine: Engine | None = None
        self._targets: dict[str, Target] = {}

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.stack.enter_context(scratch(self.workdir))
        return self._engine

    def target(self, name: str) -> Target:
        """``hostpanel`` (the operator socket over :attr:`engine`) or ``dockerd``."""
        if name not in self._targets:
            if name == "hostpanel":
                opened = hostpanel(self.engine, self.workdir)
            else:
                opened = dockerd(self.workdir, docker_archive(self.engine, self.workdir))
            self._targets[name] = self.stack.enter_context(opened)
        return self._targets[name]

    def hpctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m engine.cli`` on the scratch engine."""
        argv = [sys.executable, "-m", "engine.cli", "--root", str(self.engine.paths.root)]
        argv += ["--instance", self.engine.instance, *args]
        # As installed: with compiled bytecode (kept in the work directory, not the checkout).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(self.workdir / "pycache")}
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


# ---- section: compose up ------------------------------------------------------------------
def _project_dir(bench: StackBench, name: str, text: str) -> Path:
    directory = bench.workdir / name
    directory.mkdir(exist_ok=True)
    (directory / "compose.yaml").write_text(text)
    return directory


def _compose(target: Target, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [COMPOSE, "-f", str(directory / "compose.yaml"), "-p", "benchdc", *args]
    return subprocess.run(argv, env=target.env(), capture_output=True, text=True, timeout=600, check=False)


Way = tuple[str, Callable[[], subprocess.CompletedProcess[str]], Callable[[], object]]


def compose_ways(bench: StackBench) -> list[Way]:
    """(label, up, down) for each way of bringing the file up; a way that cannot run is left out
    with a note on stderr."""
    hp_dir = _project_dir(bench, "hpctl", FIVE_SERVICES)
    dc_dir = _project_dir(bench, "dc", FIVE_SERVICES)
    compose_file = str(hp_dir / "compose.yaml")
    ways: list[Way] = [
        (
            "hpctl compose up -d (engine)",
            lambda: bench.hpctl("compose", "-f", compose_file, "-p", "benchhp", "up", "-d"),
            lambda: bench.hpctl("compose", "-f", compose_file, "-p", "benchhp", "down", "-v"),
        )
    ]
    if not Path(COMPOSE).exists():
        print(
            f"docker-compose missing ({COMPOSE}): apt-get install docker-compose to compare", file=sys.stderr
        )
        return ways
    for name, label in (
        ("hostpanel", "docker-compose up -d -> HostPanel operator socket"),
        ("dockerd", "docker-compose up -d -> dockerd"),
    ):
        target = bench.target(name)
        if not target.up:
            print(f"{label}: not run: {target.why}", file=sys.stderr)
            continue
        ways.append(
            (
                label,
                functools.partial(_compose, target, dc_dir, "up", "-d"),
                functools.partial(_compose, target, dc_dir, "down", "-v"),
            )
        )
    return ways


def section_compose_up(bench: StackBench) -> None:
    """``up -d`` of the five-service file: hpctl vs docker-compose on our socket vs on dockerd."""
    ways = compose_ways(bench)
    samples: dict[str, list[float] | str] = {label: [] for label, _, _ in ways}
    for _ in range(bench.runs + 1):  # the first round warms up (networks, images, page cache)
        for label, up, down in ways:
            values = samples[label]
            if isinstance(values, str):
                continue
            start = time.perf_counter()
            done = up()
            elapsed = (time.perf_counter() - start) * 1000
            down()
            if done.returncode != 0:
                samples[label] = f"failed: {_tail(done.stderr)}"
            else:
                values.append(elapsed)
    rows = []
    base = samples[ways[0][0]]
    base_median = summary(base[1:])[1] if isinstance(base, list) and len(base) > 1 else None
    for label, _, _ in ways:
        values = samples[label]
        if isinstance(values, str) or len(values) < 2:
            rows.append([label, "0", "-", "-", "-", f"not run: {values or 'no samples'}"])
            continue
        _, median, p95 = summary(values[1:])
        ratio = f"{median / base_median:.2f}x" if base_median else "-"
        rows.append([label, str(len(values) - 1), f"{median:.0f}", f"{p95:.0f}", ratio])
    print(
        f"up -d of a five-service compose file, wall ms per command (whole process), "
        f"{bench.runs} interleaved runs after a warm-up; cores: {os.cpu_count()}, "
        f"load: {os.getloadavg()[0]:.1f}"
    )
    print_table(["way", "runs", "median ms", "p95 ms", "median vs hpctl"], rows)


# ---- section: the panel's stacks (issue 14, stacks) ------------------------------------------
def healthy_five() -> str:
    """:data:`FIVE_SERVICES` with a health check on every service (so "healthy" can be awaited)."""
    check = '    healthcheck: {test: ["CMD", "true"], interval: 1s, timeout: 1s, retries: 3}\n'
    return FIVE_SERVICES.replace("    init: true\n", "    init: true\n" + check)


def _stack_state(panel: Any, name: str) -> tuple[bool, bool]:
    """(every service has its replicas running, and healthy) of stack ``name``."""
    body = panel.api.call("GET", f"/stacks/{name}/")
    if body["status"] == "failed":
        raise SystemExit(f"stack {name} failed: {body['message']}")
    replicas = [r for svc in body["services"] for r in svc["replicas"]]
    started = all(svc["state"] == "started" for svc in body["services"])
    running = started and bool(replicas) and all(r["state"] == "running" for r in replicas)
    return running, running and all(r["health"] == "healthy" for r in replicas)


def section_panel_up(bench: StackBench) -> None:
    """``POST /stacks/`` of the five-service file (each with a 1 s health check) through the whole
    panel (API, agent, engine) until every service runs, and until every one is healthy; beside it
    ``docker-compose up -d`` of the same file on the operator socket (which waits for neither)."""
    from bench.panel_stack import panel_stack

    text = healthy_five()
    running_ms: list[float] = []
    healthy_ms: list[float] = []
    with panel_stack("stacks") as panel:
        for run in range(bench.runs + 1):  # the first run warms up
            name = f"b{run}"
            start = time.perf_counter()
            panel.api.call("POST", "/stacks/", {"name": name, "compose": text})
            seen_running = None
            while True:
                running, healthy = _stack_state(panel, name)
                now = time.perf_counter()
                if running and seen_running is None:
                    seen_running = now
                if healthy:
                    break
                if now - start > 300:
                    raise SystemExit(f"stack {name} not healthy after 300 s")
                time.sleep(0.05)
            if run:
                running_ms.append(((seen_running or now) - start) * 1000)
                healthy_ms.append((now - start) * 1000)
            panel.api.call("DELETE", f"/stacks/{name}/?volumes=true")
            deadline = time.monotonic() + 120
            while (
                any(c.tenant == "demo" for c in panel.engine.list(all=True)) and time.monotonic() < deadline
            ):
                time.sleep(0.1)
    rows = []
    for label, values in (
        ("panel: POST /stacks/ -> all 5 running", running_ms),
        ("panel: POST /stacks/ -> all 5 healthy", healthy_ms),
    ):
        low, median, p95 = summary(values)
        rows.append([label, str(len(values)), f"{low:.0f}", f"{median:.0f}", f"{p95:.0f}"])
    ways = [w for w in compose_ways(bench) if "HostPanel" in w[0]]
    for label, up, down in ways:
        samples = []
        for run in range(bench.runs + 1):
            start = time.perf_counter()
            done = up()
            elapsed = (time.perf_counter() - start) * 1000
            down()
            if done.returncode != 0:
                rows.append([label, "0", "-", "-", f"failed: {_tail(done.stderr)}"])
                break
            if run:
                samples.append(elapsed)
        else:
            low, median, p95 = summary(samples)
            rows.append(
                [label + " (no health wait)", str(len(samples)), f"{low:.0f}", f"{median:.0f}", f"{p95:.0f}"]
            )
    print(
        f"the five-service file through the panel vs docker-compose, wall ms, {bench.runs} runs after a "
        f"warm-up; the panel's agent reconciles every 10 s and heartbeats every 5 s (defaults); "
        f"cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}"
    )
    print_table(["way", "runs", "min ms", "median ms", "p95 ms"], rows)


RESOLVE = """\
services:
  web:
    image: busybox
    command: ["sleep", "3600"]
  kv:
    image: busybox
    command: ["sh", "-c", "echo ${VALUE} > /tmp/v && exec sleep 3600"]
"""


def _hosts_entry(panel: Any, container: str, name: str) -> str:
    """The address ``name`` resolves to in ``container`` (its /etc/hosts, kept in sync by the agent)."""
    proc = panel.engine.exec(
        container, ExecSpec(command=("cat", "/etc/hosts")), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out, _ = proc.communicate(timeout=10)
    for line in out.decode().splitlines():
        fields = line.split()
        if len(fields) > 1 and name in fields[1:]:
            return fields[0]
    return ""


def _overlay_address(container: Any) -> str:
    """The container's address on the stack's default network (engine name ``hp<id>-r_default``)."""
    return next(
        (n["ip_address"] for n in container.networks if n.get("network", "").endswith("-r_default")), ""
    )


def section_panel_resolve(bench: StackBench) -> None:
    """A redeploy that changes service ``kv``: from ``PUT /stacks/`` until ``kv`` resolves to its new
    container in ``web`` (untouched). One host: two agents on one machine cannot carry a tenant
    network (they share one network stack), so the across-hosts figure needs two machines."""
    from bench.panel_stack import panel_stack

    samples: list[float] = []
    with panel_stack("resolve") as panel:
        panel.api.call("POST", "/stacks/", {"name": "r", "compose": RESOLVE, "env": {"VALUE": "0"}})
        web = wait_for_running(panel, "demo-web-0")
        kv = wait_for_running(panel, "demo-kv-0")
        for run in range(bench.runs + 1):
            old = kv.id
            start = time.perf_counter()
            panel.api.call("PUT", "/stacks/r/", {"env": {"VALUE": str(run + 1)}})
            while True:
                kv = panel.running("demo-kv-0") or kv
                target = _overlay_address(kv) if kv.id != old else ""
                if target and _hosts_entry(panel, web.id, "kv") == target:
                    break
                if time.perf_counter() - start > 60:
                    raise SystemExit(
                        f"kv did not resolve to its new container within 60 s: kv {kv.id[:12]} "
                        f"(was {old[:12]}) at {target or kv.networks}; "
                        f"web sees {_hosts_entry(panel, web.id, 'kv')!r}"
                    )
                time.sleep(0.02)
            if run:
                samples.append((time.perf_counter() - start) * 1000)
            assert panel.running("demo-web-0") is not None and panel.running("demo-web-0").id == web.id
    low, median, p95 = summary(samples)
    print(f"a changed service's name resolving to its new container (one host), wall ms, {bench.runs} runs")
    label = "PUT /stacks/ -> kv resolves to the new kv in web"
    rows = [[label, str(len(samples)), f"{low:.0f}", f"{median:.0f}", f"{p95:.0f}"]]
    print_table(["what", "runs", "min ms", "median ms", "p95 ms"], rows)


def wait_for_running(panel: Any, name: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = panel.running(name)
        if found is not None:
            return found
        time.sleep(0.05)
    raise SystemExit(f"{name} did not run within {timeout:.0f} s")


SECTIONS: dict[str, Callable[[StackBench], None]] = {
    "compose_up": section_compose_up,
    "panel_up": section_panel_up,
    "panel_resolve": section_panel_resolve,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="any of " + ", ".join(SECTIONS))
    args = parser.parse_args()
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        sys.exit(f"unknown sections: {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # clean up on `timeout` too
    with bench_workdir("hpbench-stack-") as workdir, ExitStack() as stack:
        bench = StackBench(stack, workdir, args.runs)
        for name in wanted:
            SECTIONS[name](bench)
            print()


if __name__ == "__main__":
    main()
