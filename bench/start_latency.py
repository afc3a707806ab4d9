"""Start latency of `run --rm /bin/true` (busybox, network none): HostPanel vs raw crun vs peers.

Usage: .venv/bin/python bench/start_latency.py [--runs 50]
Prints min/median/p95 in milliseconds and each median's ratio to raw crun.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, scratch_engine, summary, timed
from engine.engine import Engine
from engine.runtime.model import ContainerSpec

PODMAN_ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def hostpanel_run(engine: Engine) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("/bin/true",)))
    final = engine.wait(c.id)
    engine.remove(c.id)
    assert final.exit_code == 0, final


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    rows: list[tuple[str, list[float]]] = []
    with scratch_engine() as engine, tempfile.TemporaryDirectory() as tmp:
        hostpanel_run(engine)  # warm: unpack the layer for this tenant once
        rows.append(("hostpanel (engine API)", timed(lambda: hostpanel_run(engine), args.runs)))
        bundle = raw_crun_bundle(engine, Path(tmp))
        state = Path(tmp) / "state"
        counter = iter(range(10**6))

        def crun_run() -> None:
            subprocess.run(
                ["crun", f"--root={state}", "run", "--bundle", str(bundle), f"b{next(counter)}"],
                check=True,
                stdin=subprocess.DEVNULL,
            )

        crun_run()
        rows.insert(0, ("raw crun run", timed(crun_run, args.runs)))
        subprocess.run(
            ["rmdir", *[str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{engine.instance}-raw/bench")]],
            check=False,
            capture_output=True,
        )
        subprocess.run(
            ["rmdir", *[str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{engine.instance}-raw")]],
            check=False,
            capture_output=True,
        )
        if shutil.which("podman"):
            archive = Path(tmp) / "busybox.tar"
            engine.images.export("busybox:latest", archive)
            loaded = subprocess.run(["podman", "load", "-i", str(archive)], capture_output=True, text=True)
            ref = loaded.stdout.strip().rsplit(" ", 1)[-1] if loaded.returncode == 0 else ""
            if ref:
                cmd = ["podman", "run", "--rm", "--network", "none", *PODMAN_ULIMITS, ref, "/bin/true"]
                probe = subprocess.run(cmd, capture_output=True, text=True)
                if probe.returncode == 0:
                    rows.append(
                        (
                            "podman run --rm --network none",
                            timed(lambda: subprocess.run(cmd, check=True, capture_output=True), args.runs),
                        )
                    )
                else:
                    print(f"podman skipped: {probe.stderr.strip()[:200]}", file=sys.stderr)
            else:
                print(f"podman skipped: load failed: {loaded.stderr.strip()[:200]}", file=sys.stderr)
        else:
            print("podman: not installed (apt-get install podman to compare)", file=sys.stderr)
        docker_ok = (
            shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
        )
        if not docker_ok:
            print("docker: no running Docker engine here, not compared", file=sys.stderr)
    base = summary(rows[0][1])[1]
    table = []
    for name, samples in rows:
        lo, med, p95 = summary(samples)
        table.append([name, f"{lo:.1f}", f"{med:.1f}", f"{p95:.1f}", f"{med / base:.2f}x"])
    print(f"start latency of /bin/true, {args.runs} sequential runs, ms (cores: {os.cpu_count()})")
    print_table(["runtime", "min", "median", "p95", "median vs raw crun"], table)


if __name__ == "__main__":
    main()
