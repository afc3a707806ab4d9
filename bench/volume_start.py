"""Start latency of `run --rm /bin/true` with volumes mounted, beside the plain start.

Usage: .venv/bin/python bench/volume_start.py [--runs 50]
Rows: no mounts; a plain-directory volume; a size-capped (ext4 loop) volume that
each run mounts and unmounts (nobody else uses it); the same volume while
another container keeps it mounted; a tmpfs. Prints min/median/p95 in
milliseconds and each median's ratio to the plain start.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, ratio_rows, run_true, scratch_engine, timed
from engine.runtime.model import ContainerSpec
from engine.volumes.spec import MountSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with scratch_engine() as engine:
        engine.volume_create("dirvol")
        engine.volume_create("loopvol", size=256 * 1024 * 1024)
        engine.volume_create("heldvol", size=256 * 1024 * 1024)
        cases: list[tuple[str, tuple[MountSpec, ...]]] = [
            ("plain (no mounts)", ()),
            ("dir volume", (MountSpec(kind="volume", source="dirvol", target="/data"),)),
            (
                "ext4-loop volume, mounted per run",
                (MountSpec(kind="volume", source="loopvol", target="/data"),),
            ),
            (
                "ext4-loop volume, already mounted",
                (MountSpec(kind="volume", source="heldvol", target="/data"),),
            ),
            ("tmpfs size=16m", (MountSpec(kind="tmpfs", target="/scratch", size=16 * 1024 * 1024),)),
        ]
        holder = engine.create(
            ContainerSpec(
                image="busybox",
                command=("sleep", "3600"),
                network="none",
                mounts=(MountSpec(kind="volume", source="heldvol", target="/data"),),
            )
        )
        for _name, mounts in cases:
            run_true(engine, network="none", mounts=mounts)  # warm
        by_case: dict[str, list[float]] = {name: [] for name, _m in cases}
        for _ in range(args.runs):  # interleaved, so load from elsewhere hits every row alike
            for name, mounts in cases:
                by_case[name] += timed(lambda m=mounts: run_true(engine, network="none", mounts=m), 1)  # type: ignore[misc]
        engine.remove(holder.id, force=True)
    table = ratio_rows(by_case)
    print(f"start latency of run --rm /bin/true, {args.runs} sequential runs, ms (cores: {os.cpu_count()})")
    print_table(["mounts", "min", "median", "p95", "median vs plain"], table)


if __name__ == "__main__":
    main()
