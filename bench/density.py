"""Density: start N `sleep` containers, report the host memory added per container, beside podman.

Usage: .venv/bin/python bench/density.py [--count 100] [--no-podman]
Memory is the proportional set size (PSS) of every process that a container
keeps alive besides its workload (its conmon; HostPanel has no Python process
per container), plus the kernel's view (MemAvailable before and after). The
same run then does the same with `podman run -d` on the same busybox, one
engine after the other (the first's containers are gone before the second's start).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PODMAN_ULIMITS, podman_image, print_table, scratch_engine
from engine.engine import Engine
from engine.runtime.model import ContainerSpec


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def python_processes() -> int:
    """How many Python processes run on the host right now."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("python"):
                    count += 1
            except OSError:
                continue
    return count


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


@dataclass
class Density:
    """What ``count`` idle containers of one engine cost the host."""

    started: float
    removed: float
    monitor_pss: int
    workload_pss: int
    mem_drop: int
    pythons_added: int
    running: int


def measure(count: int, start_one: Callable[[], tuple[int, int]], remove_all: Callable[[], None]) -> Density:
    """Start ``count`` containers (``start_one`` returns its monitor's and workload's pids); remove all."""
    before = mem_available_kib()
    pythons_before = python_processes()
    start = time.perf_counter()
    pids = [start_one() for _ in range(count)]
    started = time.perf_counter() - start
    time.sleep(1)
    after = mem_available_kib()
    added_pythons = python_processes() - pythons_before
    running = sum(1 for _, pid in pids if Path(f"/proc/{pid}").exists())
    monitor_pss = sum(pss_kib(monitor) for monitor, _ in pids)
    workload_pss = sum(pss_kib(pid) for _, pid in pids)
    start = time.perf_counter()
    remove_all()
    removed = time.perf_counter() - start
    return Density(started, removed, monitor_pss, workload_pss, before - after, added_pythons, running)


def ours(engine: Engine, count: int) -> Density:
    warm = engine.run(ContainerSpec(image="busybox", command=("true",)))
    engine.wait(warm.id)
    engine.remove(warm.id)
    ids: list[str] = []

    def start_one() -> tuple[int, int]:
        c = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
        ids.append(c.id)
        return c.conmon_pid, c.pid

    def remove_all() -> None:
        for cid in ids:
            engine.remove(cid, force=True)

    return measure(count, start_one, remove_all)


def podman(ref: str, count: int) -> Density:
    label = f"hpbench.density={time.time_ns()}"
    base = ["podman", "run", "-d", "--network", "none", "--label", label, *PODMAN_ULIMITS, ref]
    subprocess.run([*base[:2], "--rm", *base[2:], "true"], check=True, capture_output=True)

    def start_one() -> tuple[int, int]:
        cid = subprocess.run([*base, "sleep", "3600"], check=True, capture_output=True, text=True).stdout
        fmt = "{{.State.ConmonPid}} {{.State.Pid}}"
        out = subprocess.run(
            ["podman", "inspect", "--format", fmt, cid.strip()], check=True, capture_output=True, text=True
        )
        monitor, pid = out.stdout.split()
        return int(monitor), int(pid)

    def remove_all() -> None:
        ids = subprocess.run(
            ["podman", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True
        ).stdout.split()
        if ids:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], check=True, capture_output=True)

    return measure(count, start_one, remove_all)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--no-podman", action="store_true")
    args = parser.parse_args()
    n = args.count
    results: dict[str, Density] = {}
    with scratch_engine() as engine, tempfile.TemporaryDirectory() as tmp:
        results["hostpanel"] = ours(engine, n)
        ref = None if args.no_podman else podman_image(engine, Path(tmp))
        if ref:
            results["podman"] = podman(ref, n)
    names = list(results)
    print(f"density: {n} busybox `sleep 3600` containers per engine, one engine after the other")

    def row(measure_name: str, cell: Callable[[Density], str]) -> list[str]:
        return [measure_name, *(cell(results[name]) for name in names)]

    print_table(
        ["measure", *names],
        [
            row("running at the peak", lambda d: str(d.running)),
            row("time to start all", lambda d: f"{d.started:.2f} s ({d.started / n * 1000:.1f} ms each)"),
            row("time to remove all", lambda d: f"{d.removed:.2f} s ({d.removed / n * 1000:.1f} ms each)"),
            row("monitor (conmon) PSS per container", lambda d: f"{d.monitor_pss / n:.0f} KiB"),
            row("workload PSS per container (sleep)", lambda d: f"{d.workload_pss / n:.0f} KiB"),
            row("MemAvailable drop per container (all)", lambda d: f"{d.mem_drop / n:.0f} KiB"),
            row("Python processes added per container", lambda d: f"{d.pythons_added / n:g}"),
        ],
    )


if __name__ == "__main__":
    main()
