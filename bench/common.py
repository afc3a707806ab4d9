"""Shared helpers for the benchmarks: timing statistics, tables and a scratch engine."""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.engine import Engine


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Run ``fn`` ``runs`` times; return each run's wall time in milliseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float, float]:
    """min, median and 95th percentile of ``samples``."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return ordered[0], statistics.median(ordered), p95


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, ready to paste into a note."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


@contextmanager
def scratch_engine() -> Iterator[Engine]:
    """An engine on a temporary root with the busybox image; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="hpbench-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    root.chmod(0o755)  # raw crun bundles below it are entered as the container user
    engine = Engine(root=root, instance=f"hpbench-{secrets.token_hex(3)}")
    try:
        engine.images.bootstrap_busybox()
        yield engine
    finally:
        for c in engine.list(all=True):
            engine.remove(c.id, force=True)
        shutil.rmtree(root, ignore_errors=True)
