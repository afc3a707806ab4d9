"""Name resolution inside containers: HostPanel's /etc/hosts names against dockerd's embedded DNS.

Usage: .venv/bin/python bench/name_resolution.py [--count 5000] [--runs 5] [--engines hostpanel,dockerd]

What is measured (and what is not):

- **lookups per second**: one process in the client container calls the C library's
  ``getaddrinfo(NAME, AF_INET)`` ``--count`` times in a loop and times the loop with
  CLOCK_MONOTONIC (bench/resolve/resolve.c, built static with gcc and copied into the
  container). So neither an exec nor a fork per lookup is counted: this is what an
  application that resolves a peer's name pays each time. The median of ``--runs`` loops.
  HostPanel: the name is a line of the container's /etc/hosts (read on every call; no
  cache; ``multi on``, so glibc reads the whole file), on a network with 2, 200 and 1,000
  names (containers on other hosts, given with ``set_remote_endpoints``). dockerd (Debian's
  docker.io, started as bench/docker_api.py starts it, on its own roots and socket) with a
  user-defined bridge network: the lookup misses /etc/hosts and asks the embedded DNS
  server at 127.0.0.11.
- **update to seen**: the time from the call that changes a name's address to the first
  lookup inside a running container that returns the new address (the container polls
  with getaddrinfo in a tight loop and reports the CLOCK_MONOTONIC instant it saw it; the
  host shares that clock). HostPanel: ``NetworkManager.set_remote_endpoints`` in process
  (what the host agent calls), 200 names on the network. dockerd: ``docker network connect
  --alias NAME --ip ADDR`` of another container, through the docker CLI (so a CLI start is included).
- podman: measured only if netavark and aardvark-dns are installed; else the table says so.

The stack bench can call :func:`lookups_per_second` on any running HostPanel container.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from engine.engine import Engine
from engine.networks.model import NetworkJoin, RemoteEndpoint
from engine.runtime.model import ContainerSpec, ExecSpec

SOURCE = Path(__file__).resolve().parent / "resolve" / "resolve.c"
IN_CONTAINER = "/hp-resolve"
ENGINES = ("hostpanel", "dockerd", "podman")


def build_resolver(directory: Path) -> Path:
    """bench/resolve/resolve.c built static into ``directory``; RuntimeError without gcc."""
    if not shutil.which("gcc"):
        raise RuntimeError("gcc is missing: apt-get install gcc libc6-dev")
    binary = directory / "hp-resolve"
    built = subprocess.run(
        ["gcc", "-O2", "-static", "-o", str(binary), str(SOURCE)], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(f"cannot build {SOURCE.name}: {built.stderr.strip()[-300:]}")
    return binary


@contextlib.contextmanager
def _resolver() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hp-resolve-") as tmp:
        yield build_resolver(Path(tmp))


def install_resolver(engine: Engine, container: str, binary: Path) -> None:
    """Copy the resolver into ``container`` at /hp-resolve (through the engine's copy_to)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname=IN_CONTAINER.lstrip("/"))
        info.mode, info.uid, info.gid = 0o755, 0, 0
        with binary.open("rb") as f:
            tar.addfile(info, f)
    buffer.seek(0)
    engine.copy_to(container, "/", buffer)


def _run_in(engine: Engine, container: str, *args: str, timeout: float = 120) -> str:
    proc = engine.exec(
        container, ExecSpec(command=(IN_CONTAINER, *args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{IN_CONTAINER} {' '.join(args)} failed ({proc.returncode}): {err.decode()[-200:]}"
        )
    return out.decode()


def _rate(output: str) -> float:
    count, nanoseconds, _address, _ok = output.split()
    return int(count) / (int(nanoseconds) / 1e9)


def lookups_per_second(
    engine: Engine, container: str, name: str, *, count: int = 5000, binary: Path | None = None
) -> float:
    """getaddrinfo(``name``) calls per second inside running ``container`` (one loop of ``count``).

    Copies the static resolver into the container first (built with gcc when ``binary`` is None).
    Raises RuntimeError when the name does not resolve there or the resolver cannot be built.
    """
    if binary is None:
        with _resolver() as built:
            return lookups_per_second(engine, container, name, count=count, binary=built)
    install_resolver(engine, container, binary)
    return _rate(_run_in(engine, container, "bench", name, str(count)))


def _watch_then(start_watch: list[str], change: object, run: object) -> float:
    """Seconds from just before ``change()`` to the watcher (``run(args)`` -> its output) seeing it."""
    result: dict[str, str] = {}

    def watch() -> None:
        result["out"] = run(start_watch)  # type: ignore[operator]

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.5)  # the watcher is polling
    before = time.monotonic_ns()
    change()  # type: ignore[operator]
    thread.join(60)
    seen_at = int(result["out"].split()[0])
    return (seen_at - before) / 1e9


# ---- HostPanel ------------------------------------------------------------------------------
def measure_hostpanel(engine: Engine, binary: Path, count: int, runs: int) -> list[list[str]]:
    """Rows for HostPanel: lookups/s with 2, 200 and 1,000 names on the network, and
    set_remote_endpoints -> seen (a replica moving, 200 other names on the network)."""
    tenant = "bench"
    subnet = ipaddress.IPv4Network(f"10.{secrets.randbelow(50) + 200}.{secrets.randbelow(31) * 8}.0/21")
    free = iter(list(subnet.hosts())[16:])  # the two containers take the first addresses
    engine.network_create("names", tenant=tenant, subnet=str(subnet))
    srv = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600"), name="srv", tenant=tenant,
                                   networks=(NetworkJoin("names", ("web",)),)))  # fmt: skip
    cli = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600"), name="cli", tenant=tenant,
                                   networks=(NetworkJoin("names"),)))  # fmt: skip
    install_resolver(engine, cli.id, binary)
    peers = [RemoteEndpoint(f"peer{i}", str(next(free)), ("replica",)) for i in range(998)]
    sizes = {"2 names": [], "200 names": peers[:198], "1,000 names": peers}
    rates: dict[str, list[float]] = {label: [] for label in sizes}
    _run_in(engine, cli.id, "bench", "web", str(count))  # warm-up
    for _ in range(runs):  # the sizes alternate, so all see the same background load
        for label, remote in sizes.items():
            engine.network_set_remote("names", remote)
            rates[label].append(_rate(_run_in(engine, cli.id, "bench", "web", str(count))))
    rows = [
        ["hostpanel", f"/etc/hosts, {label} on the network", f"{statistics.median(measured):,.0f}", ""]
        for label, measured in rates.items()
    ]
    latencies = []
    for _ in range(runs):  # a replica moves: the name stays, its address changes
        before, after = RemoteEndpoint("moving", str(next(free))), RemoteEndpoint("moving", str(next(free)))
        engine.network_set_remote("names", [*peers[:198], before])
        latencies.append(
            _watch_then(
                ["watch", "moving", after.ip, "30"],
                lambda a=after: engine.network_set_remote("names", [*peers[:198], a]),
                lambda args: _run_in(engine, cli.id, *args),
            )
        )
    rows.append(
        [
            "hostpanel",
            "set_remote_endpoints -> seen inside (200 names)",
            "",
            f"{statistics.median(latencies) * 1000:.2f}",
        ]
    )
    for c in (srv, cli):
        engine.remove(c.id, force=True)
    engine.network_remove("names")
    return rows


# ---- dockerd --------------------------------------------------------------------------------
def measure_dockerd(target: object, binary: Path, count: int, runs: int) -> list[list[str]]:
    """Rows for dockerd's embedded DNS (user-defined bridge network)."""
    from bench.docker_api import docker

    def ok(*args: str) -> str:
        done = docker(target, *args)  # type: ignore[arg-type]
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()[-200:]}")
        return done.stdout

    third = secrets.randbelow(250)
    ok("network", "create", "--subnet", f"10.199.{third}.0/24", "hpnames")
    ok(
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "hpnames",
        "--network-alias",
        "web",
        "busybox",
        "sleep",
        "3600",
    )
    ok("run", "-d", "--name", "cli", "--network", "hpnames", "busybox", "sleep", "3600")
    ok("cp", str(binary), f"cli:{IN_CONTAINER}")

    def run(args: list[str]) -> str:
        return ok("exec", "cli", IN_CONTAINER, *args)

    run(["bench", "web", str(count)])  # warm-up
    rates = [_rate(run(["bench", "web", str(count)])) for _ in range(runs)]
    rows = [
        ["dockerd 20.10", "embedded DNS (127.0.0.11), user network", f"{statistics.median(rates):,.0f}", ""]
    ]
    ok("network", "create", "--subnet", f"10.198.{third}.0/24", "hpother")
    latencies = []
    for i in range(runs):  # a replica moves: the alias has one container, then a second one joins
        alias = f"moving{i}"
        ok("run", "-d", "--network", "hpnames", "--network-alias", alias, "busybox", "sleep", "3600")
        ok("run", "-d", "--name", f"new{i}", "--network", "hpother", "busybox", "sleep", "3600")
        address = f"10.199.{third}.{240 + i}"
        latencies.append(
            _watch_then(
                ["watch", alias, address, "30"],
                lambda i=i, a=address, n=alias: ok(
                    "network", "connect", "--ip", a, "--alias", n, "hpnames", f"new{i}"
                ),
                run,
            )
        )
    rows.append(
        [
            "dockerd 20.10",
            "docker network connect (CLI) -> seen inside",
            "",
            f"{statistics.median(latencies) * 1000:.2f}",
        ]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="lookups per timed loop")
    parser.add_argument("--runs", type=int, default=5, help="loops (and update measurements) per row")
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    from bench import docker_api

    rows: list[list[str]] = []
    cgroups_before = docker_api.peer_cgroups()
    dirs_before = {d for d in docker_api.PEER_DIRS if d.exists()}
    workdir = Path(tempfile.mkdtemp(prefix="hpbench-names-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    workdir.chmod(0o755)
    (workdir / "docker-config").mkdir()
    try:
        binary = build_resolver(workdir)
        with ExitStack() as stack:
            engine = stack.enter_context(docker_api.scratch(workdir))
            if "hostpanel" in wanted:
                rows += measure_hostpanel(engine, binary, args.count, args.runs)
            if "dockerd" in wanted:
                archive = docker_api.docker_archive(engine, workdir)
                target = stack.enter_context(docker_api.dockerd(workdir, archive))
                if target.up:
                    try:
                        rows += measure_dockerd(target, binary, args.count, args.runs)
                    except RuntimeError as exc:
                        rows.append(["dockerd 20.10", f"not measured: {exc}", "", ""])
                else:
                    rows.append(["dockerd 20.10", f"not measured: {target.why}", "", ""])
            if "podman" in wanted:
                if shutil.which("netavark") or Path("/usr/lib/podman/netavark").exists():
                    rows.append(
                        [
                            "podman 4.3",
                            "not measured: netavark found but this bench has no podman run",
                            "",
                            "",
                        ]
                    )
                else:
                    rows.append(
                        [
                            "podman 4.3",
                            "not measured: netavark/aardvark-dns not installed (CNI, no names)",
                            "",
                            "",
                        ]
                    )
    finally:
        docker_api.kill_strays(workdir)
        docker_api.unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        docker_api.remove_cgroups(docker_api.peer_cgroups() - cgroups_before)
        for directory in docker_api.PEER_DIRS:
            if directory not in dirs_before:
                with contextlib.suppress(OSError):
                    directory.rmdir()
    print(f"name lookups inside a container: getaddrinfo loop of {args.count}, median of {args.runs}")
    print_table(["engine", "what", "lookups/s", "update -> seen ms"], rows)


if __name__ == "__main__":
    main()
