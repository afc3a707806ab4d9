"""Cost of resource control: a `stats` sweep over N running containers, `update`, and start latency
with limits beside the plain start.

Usage: .venv/bin/python bench/stats_update.py [--containers 100] [--runs 30]
Prints min/median/p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, run_true, scratch_engine, summary, timed
from engine.cgroups.resources import Resources
from engine.runtime.model import ContainerSpec

MiB = 1024**2
LIMITS = Resources(memory=64 * MiB, cpu_quota=50_000, pids=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rows: list[tuple[str, list[float]]] = []
    with scratch_engine() as engine:
        engine.set_tenant_quota("capped", Resources(memory=2048 * MiB, cpu_quota=200_000, pids=2000))
        # warm: unpack the layer for each tenant once
        run_true(engine, tenant="default", resources=Resources())
        run_true(engine, tenant="capped", resources=LIMITS)
        rows.append(
            (
                "run --rm /bin/true, no limits",
                timed(lambda: run_true(engine, tenant="default", resources=Resources()), args.runs),
            )
        )
        rows.append(
            (
                "run --rm /bin/true, --memory 64m --cpus 0.5 --pids-limit 100",
                timed(lambda: run_true(engine, tenant="default", resources=LIMITS), args.runs),
            )
        )
        rows.append(
            (
                "  same, in a tenant with a quota",
                timed(lambda: run_true(engine, tenant="capped", resources=LIMITS), args.runs),
            )
        )
        ids = []
        for i in range(args.containers):
            tenant = "capped" if i % 2 else "default"
            c = engine.run(
                ContainerSpec(image="busybox", command=("sleep", "3600"), tenant=tenant, resources=LIMITS)
            )
            ids.append(c.id)
        running = engine.list()
        assert len(running) == args.containers
        rows.append(
            (
                f"stats sweep, {args.containers} containers (engine.stats)",
                timed(lambda: engine.stats(), args.runs),
            )
        )
        rows.append(
            (
                f"  cgroup reads only, {args.containers} containers",
                timed(lambda: engine.usage.stats(running), args.runs),
            )
        )
        rows.append(
            (
                f"usage sample, {args.containers} containers (monitor round)",
                timed(engine.sample_usage, args.runs),
            )
        )
        target = ids[0]
        sizes = iter(range(10**6))

        def update() -> None:
            engine.update(target, Resources(memory=(64 + next(sizes) % 2) * MiB))

        rows.append(("update --memory (engine)", timed(update, args.runs)))
        state = engine.paths.run / "crun"

        def raw_update() -> None:
            subprocess.run(
                ["crun", f"--root={state}", "update", f"--memory={(64 + next(sizes) % 2) * MiB}", target],
                check=True,
                capture_output=True,
            )

        rows.append(("raw crun update --memory", timed(raw_update, args.runs)))
        rows.append(
            (
                "tenant quota set (live, 50 containers below)",
                timed(
                    lambda: engine.set_tenant_quota(
                        "capped",
                        Resources(memory=(2048 + next(sizes) % 2) * MiB, cpu_quota=200_000, pids=2000),
                    ),
                    args.runs,
                ),
            )
        )
    table = []
    for name, samples in rows:
        lo, med, p95 = summary(samples)
        table.append([name, f"{lo:.1f}", f"{med:.1f}", f"{p95:.1f}"])
    print(f"resource control, {args.runs} runs each, ms (cores: {os.cpu_count()})")
    print_table(["operation", "min", "median", "p95"], table)


if __name__ == "__main__":
    main()
