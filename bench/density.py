"""Density: start N `sleep` containers, report the host memory HostPanel adds per container.

Usage: .venv/bin/python bench/density.py [--count 100]
Memory is the proportional set size (PSS) of every process of ours that a
container keeps alive (its conmon; there is no Python process per container),
plus the kernel's view (MemAvailable before and after).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, scratch_engine
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    with scratch_engine() as engine:
        warm = engine.run(ContainerSpec(image="busybox", command=("true",)))
        engine.wait(warm.id)
        engine.remove(warm.id)
        before = mem_available_kib()
        pythons_before = python_processes()
        start = time.perf_counter()
        containers = [
            engine.run(ContainerSpec(image="busybox", command=("sleep", "3600"))) for _ in range(args.count)
        ]
        started = time.perf_counter() - start
        time.sleep(1)
        after = mem_available_kib()
        added_pythons = python_processes() - pythons_before
        running = sum(1 for c in engine.list() if c.status == "running")
        conmon_pss = sum(pss_kib(c.conmon_pid) for c in containers)
        workload_pss = sum(pss_kib(c.pid) for c in containers)
        start = time.perf_counter()
        for c in containers:
            engine.remove(c.id, force=True)
        removed = time.perf_counter() - start
    n = args.count
    print(f"density: {n} busybox `sleep 3600` containers ({running} running at the peak)")
    print_table(
        ["measure", "value"],
        [
            ["time to start all", f"{started:.2f} s ({started / n * 1000:.1f} ms each)"],
            ["time to remove all (rm -f)", f"{removed:.2f} s ({removed / n * 1000:.1f} ms each)"],
            ["conmon PSS per container (ours)", f"{conmon_pss / n:.0f} KiB"],
            ["workload PSS per container (sleep)", f"{workload_pss / n:.0f} KiB"],
            ["MemAvailable drop per container (all)", f"{(before - after) / n:.0f} KiB"],
            ["Python processes added per container", f"{added_pythons / n:g}"],
        ],
    )


if __name__ == "__main__":
    main()
