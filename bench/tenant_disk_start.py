"""Start latency of `run --rm /bin/true` for a tenant with a root file system disk, beside one without.

Usage: .venv/bin/python bench/tenant_disk_start.py [--runs 50]
Rows: a tenant without a disk (upper dirs in the bundle); a tenant with a disk that each run
mounts and unmounts (its only container); the same while another container of the tenant
keeps the disk mounted (the steady state of a tenant with replicas on the host); and, for
each, with tenant limits required (the quota written on create and start). Prints
min/median/p95 in milliseconds and each median's ratio to the first row.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, ratio_rows, run_true, scratch_engine, timed
from engine.cgroups.resources import Resources
from engine.runtime.model import ContainerSpec

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with scratch_engine() as engine:
        for tenant in ("nodisk", "disk", "helddisk"):
            engine.set_tenant_quota(tenant, Resources(memory=1024 * MiB, pids=1000))
        engine.set_tenant_storage("disk", 1024 * MiB)
        engine.set_tenant_storage("helddisk", 1024 * MiB)
        holder = engine.run(
            ContainerSpec(image="busybox", command=("sleep", "3600"), network="none", tenant="helddisk")
        )
        cases = [
            ("no tenant disk", "nodisk"),
            ("tenant disk, mounted per run", "disk"),
            ("tenant disk, already mounted", "helddisk"),
        ]
        by_case: dict[str, list[float]] = {name: [] for name, _t in cases}
        by_case.update({f"{name} + limits required": [] for name, _t in cases})
        for _name, tenant in cases:
            run_true(engine, network="none", tenant=tenant)  # warm
        for _ in range(args.runs):  # interleaved, so load from elsewhere hits every row alike
            for required in (False, True):
                engine.containers.quotas.required = required
                for name, tenant in cases:
                    key = f"{name} + limits required" if required else name
                    by_case[key] += timed(lambda t=tenant: run_true(engine, network="none", tenant=t), 1)  # type: ignore[misc]
        engine.remove(holder.id, force=True)
        for tenant in ("disk", "helddisk"):
            engine.remove_tenant_storage(tenant)
    table = ratio_rows(by_case)
    print(f"start latency of run --rm /bin/true, {args.runs} sequential runs, ms (cores: {os.cpu_count()})")
    print_table(["tenant", "min", "median", "p95", "median vs first"], table)


if __name__ == "__main__":
    main()
