"""Shared helpers for the benchmarks: timing statistics, tables and a scratch engine."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.engine import Engine
from engine.runtime.model import ContainerSpec


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


PODMAN_ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def raw_crun_bundle(engine: Engine, workdir: Path) -> Path:
    """A bundle with the busybox layer as rootfs and crun's own default config (+ user namespace)."""
    image = engine.images.resolve("busybox")
    rootfs = engine.images.layer_dirs(image, 100000)[-1]
    bundle = workdir / "bundle"
    bundle.mkdir()
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    config["linux"]["cgroupsPath"] = f"/{engine.instance}-raw/bench"
    config["linux"]["namespaces"].append({"type": "user"})
    mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["uidMappings"] = config["linux"]["gidMappings"] = mapping
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def crun_runner(engine: Engine, workdir: Path) -> Callable[[], None]:
    """A function that runs the raw crun bundle once (`crun run`), for the baseline row."""
    bundle = raw_crun_bundle(engine, workdir)
    state = workdir / "state"
    counter = iter(range(10**9))

    def run() -> None:
        subprocess.run(
            ["crun", f"--root={state}", "run", "--bundle", str(bundle), f"b{next(counter)}"],
            check=True,
            stdin=subprocess.DEVNULL,
        )

    return run


def remove_raw_crun_cgroups(engine: Engine) -> None:
    """rmdir the cgroups the raw crun baseline left (crun does not remove parents)."""
    for pattern in (f"*/{engine.instance}-raw/bench", f"*/{engine.instance}-raw"):
        for path in Path("/sys/fs/cgroup").glob(pattern):
            with contextlib.suppress(OSError):
                path.rmdir()


def podman_image(engine: Engine, workdir: Path) -> str | None:
    """Our busybox loaded into podman (from our OCI export); None, with a note, if podman can't."""
    if not shutil.which("podman"):
        print("podman: not installed (apt-get install podman to compare)", file=sys.stderr)
        return None
    archive = workdir / "busybox.tar"
    engine.images.export("busybox:latest", archive)
    loaded = subprocess.run(["podman", "load", "-i", str(archive)], capture_output=True, text=True)
    ref = loaded.stdout.strip().rsplit(" ", 1)[-1] if loaded.returncode == 0 else ""
    if not ref:
        print(f"podman skipped: load failed: {loaded.stderr.strip()[:200]}", file=sys.stderr)
        return None
    return ref


def docker_available() -> bool:
    """Whether a Docker engine answers here (the client alone is not enough)."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return True
    print("docker: no running Docker engine here, not compared", file=sys.stderr)
    return False


def interleaved(modes: list[tuple[str, Callable[[], object]]], runs: int) -> dict[str, list[float]]:
    """Time every mode ``runs`` times, round-robin, so all see the same background load."""
    for _, fn in modes:
        fn()  # warm-up: unpack layers, create default networks
    samples: dict[str, list[float]] = {label: [] for label, _ in modes}
    for _ in range(runs):
        for label, fn in modes:
            samples[label] += timed(fn, 1)
    return samples


def summary_cells(samples: list[float], digits: int = 1) -> list[str]:
    """min, median and p95 of ``samples`` as table cells with ``digits`` decimals."""
    return [f"{v:.{digits}f}" for v in summary(samples)]


def ratio_rows(samples: dict[str, list[float]], digits: int = 1, ours: str = "") -> list[list[str]]:
    """A row per mode: name, min/median/p95, its median's ratio to the first mode's (and to ``ours``)."""
    base = summary(next(iter(samples.values())))[1]
    rows = []
    for name, values in samples.items():
        median = summary(values)[1]
        row = [name, *summary_cells(values, digits), f"{median / base:.2f}x"]
        if ours:
            row.append(f"{median / summary(samples[ours])[1]:.2f}x")
        rows.append(row)
    return rows


def print_ratio_table(title: str, samples: dict[str, list[float]], ours: str = "") -> None:
    """min/median/p95 per mode and each median's ratio to the first mode's (and to mode ``ours``)."""
    print(f"{title} (cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})")
    headers = ["runtime", "min", "median", "p95", "median vs raw crun"]
    print_table([*headers, *(["median vs ours"] if ours else [])], ratio_rows(samples, ours=ours))


def run_true(engine: Engine, **spec: Any) -> None:
    """Busybox `/bin/true` via the engine API: create, start, wait, remove (extra ContainerSpec fields)."""
    c = engine.run(ContainerSpec(image="busybox", command=("/bin/true",), **spec))
    final = engine.wait(c.id)
    engine.remove(c.id)
    assert final.exit_code == 0, final
