"""Build time of a small multi-stage project: cold (no cache) and fully cached, beside `podman build`.

Usage: .venv/bin/python bench/build.py [--runs 5]
The project: a busybox stage that "compiles" 200 source files into one
artifact with a shell script, and a busybox stage that gets the artifact by
COPY --from. Rows: hpctl build --no-cache, hpctl build with everything
cached, and the same two with `podman build` (buildah) when podman is
installed, run with --network=none (podman otherwise leaves `ip nat` /
`ip filter` nft tables; the script checks that none appeared). Prints
min/median/p95 in milliseconds and each median's ratio to the first row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PODMAN_ULIMITS, podman_image, print_table, ratio_rows, scratch_engine, timed
from engine.build.model import BuildOptions
from engine.engine import Engine

DOCKERFILE = """\
FROM {base} AS compile
WORKDIR /src
COPY src/ ./
RUN sh build.sh > /app.bin && chmod 755 /app.bin

FROM {base}
COPY --from=compile /app.bin /usr/local/bin/app
CMD ["app"]
"""
BUILD_SH = 'echo "#!/bin/sh"; for f in *.c; do echo "echo $(wc -c < "$f") $f"; done\n'


def write_project(path: Path, base: str) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (path / "src" / "build.sh").write_text(BUILD_SH)
    for i in range(200):
        (path / "src" / f"unit{i:03}.c").write_text(f"int f{i}(void) {{ return {i}; }}\n" * 20)
    return path


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return set(out.splitlines())


def podman_rows(engine: Engine, work: Path, runs: int) -> dict[str, list[float]]:
    base = podman_image(engine, work)
    if base is None:
        return {}
    project = write_project(work / "podman-project", base)
    before = nft_tables()

    def podman_build(*extra: str) -> Callable[[], None]:
        cmd = ["podman", "build", "-q", "--network=none", *PODMAN_ULIMITS, *extra, "-t", "hpbench-build:1"]
        return lambda: subprocess.run([*cmd, str(project)], check=True, capture_output=True)

    try:
        podman_build()()  # warm: the cache for the cached row
        rows = {
            "podman build --no-cache": timed(podman_build("--no-cache"), runs),
            "podman build (all cached)": timed(podman_build(), runs),
        }
    finally:
        subprocess.run(["podman", "rmi", "-f", "hpbench-build:1", base], capture_output=True)
        subprocess.run(["podman", "image", "prune", "-f"], capture_output=True)
    # only podman's own tables (ip nat, ip filter, netavark): hp_* tables are other engines' (tests running)
    appeared = {t for t in nft_tables() - before if not t.split()[-1].startswith("hp_")}
    if appeared:
        print(f"warning: podman left nft tables behind: {sorted(appeared)}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpbench-build-"))
    try:
        with scratch_engine() as engine:
            project = write_project(work / "project", "busybox")

            def ours(no_cache: bool) -> Callable[[], None]:
                options = BuildOptions(context=project, tag="bench:1", no_cache=no_cache)
                return lambda: engine.build(options)

            ours(False)()  # warm: layers unpacked, cache filled
            samples = {
                "hpctl build --no-cache": timed(ours(True), args.runs),
                "hpctl build (all cached)": timed(ours(False), args.runs),
            }
            samples.update(podman_rows(engine, work, args.runs))  # says so when podman is missing
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = ratio_rows(samples, digits=0)
    print(f"Build of a 2-stage project (200 files, 1 RUN), ms (cores: {os.cpu_count()}, runs: {args.runs})")
    print_table(["build", "min", "median", "p95", "median vs hpctl --no-cache"], rows)


if __name__ == "__main__":
    main()
