"""The stock docker CLI against three engines: HostPanel's operator socket, dockerd and podman.

Usage: .venv/bin/python bench/docker_api.py [--runs 20] [--containers 100] [--engines hostpanel,podman]

The same docker binary (``$HPBENCH_DOCKER``, else the first ``docker`` on PATH)
times four commands, whole process, against each engine's API socket:
``docker run --rm busybox true`` (and the same with ``--network none``, since
the engines' default networks differ); ``docker ps`` while ``--containers``
busybox containers run there; ``docker exec <one of them> true``. The engines:

- HostPanel: ``python -m engine.cli docker serve --socket <tmp>`` on a scratch
  engine root and instance with the bootstrap busybox;
- dockerd from Debian's ``docker.io`` (apt-get installed when missing, with
  services kept from starting), with ``--bridge=none --iptables=false
  --ip-masq=false`` and its own data root, exec root, socket, pidfile and
  config file, so it starts its own containerd;
- podman's API (``podman system service --time=0 unix://<tmp>``, apt-get
  installed when missing) on its own storage, with a CNI config of its own:
  one bridge without masquerading or port mapping, so it adds no firewall
  rules, and default ulimits within this host's hard limits.

The peers get the very busybox HostPanel runs: exported from the scratch
engine (OCI layout), turned into a docker archive by skopeo, ``docker load``ed
into dockerd and ``podman load``ed into podman. All engines are up at once and
the runs go round-robin over engines and verbs, so all see the same background
load. A peer that cannot run here gets a row saying why. Everything started is
stopped afterwards: containers, daemons and their leftover processes, mounts,
the scratch engine's bridges and nft tables, podman's bridge, and cgroup
directories the peers created.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, summary
from engine.engine import Engine

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("hostpanel", "dockerd", "podman")
PEER_CGROUPS = ("docker", "libpod_parent")
PEER_DIRS = [Path(p) for p in ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")]
PEER_DIRS += [Path(p) for p in ("/var/lib/cni/results", "/var/lib/cni/networks", "/var/lib/cni")]
"""Directories the peers make outside their own roots: removed afterwards when new and empty."""
HOST_ULIMITS = ["nofile=20000:20000", "nproc=32768:32768"]  # podman's defaults exceed this host's hard limits


@dataclass
class Target:
    """One engine's Docker API socket, or why there is none."""

    name: str
    socket: Path | None = None
    why: str = ""
    config: Path | None = None
    containers: list[str] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.socket is not None and not self.why

    def env(self) -> dict[str, str]:
        assert self.socket is not None and self.config is not None
        return os.environ | {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config)}


def docker_binary() -> str:
    path = os.environ.get("HPBENCH_DOCKER") or shutil.which("docker")
    if not path:
        sys.exit("no docker CLI: install the static docker client or Debian's docker.io")
    return path


DOCKER = docker_binary()


def docker(target: Target, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against ``target``."""
    return subprocess.run(
        [DOCKER, *args],
        env=target.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _tail(text: str, limit: int = 160) -> str:
    line = " ".join(text.strip().split())
    return line[-limit:] if line else "no output"


def wait_ready(target: Target, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Wait until ``docker info`` answers on the target's socket; set ``why`` when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            target.why = f"exited at start ({proc.returncode}): {_tail(log.read_text(errors='replace'))}"
            return
        if target.socket is not None and target.socket.exists() and docker(target, "info").returncode == 0:
            return
        time.sleep(0.3)
    target.why = f"did not answer within {timeout:.0f}s: {_tail(log.read_text(errors='replace'))}"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    """Signal a process we started and wait for it; SIGKILL when it does not end in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_strays(workdir: Path) -> list[int]:
    """SIGKILL processes whose command line names ``workdir`` (ours: e.g. podman's lingering exec conmons)."""
    killed = []
    marker = str(workdir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def unmount_below(path: Path) -> list[str]:
    """Unmount whatever is still mounted below ``path``, deepest first."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(path) or point.startswith(f"{path}/"):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return mounts


def peer_cgroups() -> set[Path]:
    return {p for name in PEER_CGROUPS for p in Path("/sys/fs/cgroup").glob(f"*/{name}")}


def remove_cgroups(paths: set[Path]) -> None:
    """rmdir (children first) the cgroup directories in ``paths`` that are empty now."""
    for top in paths:
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def ensure_installed(binary: str, package: str) -> str:
    """``""`` when ``binary`` is there (apt-get installing ``package`` if missing), else why not."""
    if shutil.which(binary):
        return ""
    print(f"installing {package} (apt-get) for the {binary} peer ...", file=sys.stderr, flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:  # keep the package's daemons from starting on install
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        apt = [
            "apt-get",
            "-o",
            "DPkg::Lock::Timeout=300",
            "install",
            "-y",
            "--no-install-recommends",
            package,
        ]
        done = subprocess.run(apt, env=env, capture_output=True, text=True, timeout=900, check=False)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    if shutil.which(binary):
        return ""
    return f"{binary} not installed: apt-get install {package} failed: {_tail(done.stderr or done.stdout)}"


def remove_all(target: Target) -> None:
    """Remove every container of the target (through its API, with the same CLI)."""
    if target.socket is None or not target.socket.exists():
        return
    listed = docker(target, "ps", "-aq").stdout.split()
    if listed:
        docker(target, "rm", "-f", *listed, timeout=600)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def bench_workdir(prefix: str) -> Iterator[Path]:
    """A scratch directory (with ``docker-config`` for the CLI), and afterwards everything the
    engines left: processes naming it, mounts below it, its files, the peers' new cgroups and
    directories. SIGTERM (e.g. from ``timeout``) cleans up too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    cgroups_before = peer_cgroups()
    dirs_before = {d for d in PEER_DIRS if d.exists()}
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    workdir.chmod(0o755)  # the scratch engine's bundles are entered as the container user
    (workdir / "docker-config").mkdir()  # the CLI's own config: never ~/.docker
    try:
        yield workdir
    finally:
        kill_strays(workdir)
        unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        remove_cgroups(peer_cgroups() - cgroups_before)
        for directory in PEER_DIRS:  # deepest first
            if directory not in dirs_before:
                with contextlib.suppress(OSError):
                    directory.rmdir()


# ---- the three engines --------------------------------------------------------------------
@contextmanager
def hostpanel(engine: Engine, workdir: Path) -> Iterator[Target]:
    """HostPanel's operator socket (``hpctl docker serve``) over the scratch engine."""
    target = Target(
        "hostpanel (operator socket)", workdir / "hostpanel.sock", config=workdir / "docker-config"
    )
    log = workdir / "hostpanel-serve.log"
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "--root",
        str(engine.paths.root),
        "--instance",
        engine.instance,
    ]
    cmd += ["docker", "serve", "--socket", str(target.socket)]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_sigint,  # SIGINT stops it cleanly even when this bench runs in the background
        )
    try:
        wait_ready(target, proc, log)
        yield target
    finally:
        remove_all(target)
        stop(proc, signal.SIGINT)


@contextmanager
def dockerd(workdir: Path, archive: Path) -> Iterator[Target]:
    """Debian's dockerd on its own roots and socket, without a bridge or iptables rules."""
    target = Target("dockerd 20.10 (docker.io)", config=workdir / "docker-config")
    target.why = ensure_installed("dockerd", "docker.io")
    if target.why:
        yield target
        return
    root = workdir / "dockerd"
    root.mkdir()
    (root / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(root / "key.json")}))
    target.socket = root / "docker.sock"
    log = root / "dockerd.log"
    cmd = ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false"]
    cmd += ["--data-root", str(root / "data"), "--exec-root", str(root / "exec")]
    cmd += ["--pidfile", str(root / "docker.pid"), "--config-file", str(root / "daemon.json")]
    cmd += ["-H", f"unix://{target.socket}", "--log-level", "warn"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_ready(target, proc, log)
        if target.up:
            loaded = docker(target, "load", "-i", str(archive), timeout=300)
            if loaded.returncode != 0:
                target.why = f"docker load failed: {_tail(loaded.stderr)}"
        yield target
    finally:
        remove_all(target)
        stop(proc)
        unmount_below(root)


@dataclass
class PodmanStorage:
    """podman's own storage, run root, CNI config and containers.conf below one directory."""

    root: Path
    flags: list[str]
    env: dict[str, str]
    bridge: str

    def cleanup(self) -> None:
        """Kill podman's leftover processes (conmons), unmount its storage, delete its bridge."""
        kill_strays(self.root)
        unmount_below(self.root)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)


def podman_storage(root: Path) -> PodmanStorage:
    """Flags and environment for podman (CLI or API service) on storage of its own below ``root``.

    Its CNI config is one bridge without masquerading or port mapping (no firewall rules), and
    default ulimits within this host's hard limits.
    """
    (root / "cni").mkdir(parents=True)
    bridge = f"hpbp{secrets.token_hex(4)}"
    subnet = f"10.213.{secrets.randbelow(250) + 1}"
    conflist = {
        "cniVersion": "0.4.0",
        "name": "podman",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": f"{subnet}.0/24", "gateway": f"{subnet}.1"}]],
                    "dataDir": str(root / "cni-ipam"),
                },
            }
        ],
    }
    (root / "cni" / "87-podman-bridge.conflist").write_text(json.dumps(conflist))
    conf = root / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f"default_ulimits = {json.dumps(HOST_ULIMITS)}\n"
        "[network]\n"
        'network_backend = "cni"\n'
        f'network_config_dir = "{root / "cni"}"\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    flags = ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--tmpdir", str(root / "tmp")]
    flags += ["--network-config-dir", str(root / "cni"), "--network-backend", "cni"]
    return PodmanStorage(root, flags, os.environ | {"CONTAINERS_CONF": str(conf)}, bridge)


@contextmanager
def podman(workdir: Path, archive: Path) -> Iterator[Target]:
    """podman's Docker-compatible API service on its own storage and CNI config."""
    target = Target("podman 4.3 (system service)", config=workdir / "docker-config")
    target.why = ensure_installed("podman", "podman")
    if target.why:
        yield target
        return
    root = workdir / "podman"
    storage = podman_storage(root)
    flags, env = storage.flags, storage.env
    target.socket = root / "podman.sock"
    log = root / "podman.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        loaded = subprocess.run(
            ["podman", *flags, "load", "-i", str(archive)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if loaded.returncode != 0:
            target.why = f"podman load failed: {_tail(loaded.stderr)}"
        else:
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    ["podman", *flags, "system", "service", "--time=0", f"unix://{target.socket}"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            wait_ready(target, proc, log)
        yield target
    finally:
        remove_all(target)
        if proc is not None:
            stop(proc)
        storage.cleanup()


@contextmanager
def scratch(workdir: Path) -> Iterator[Engine]:
    """A scratch engine with busybox; its containers, bridges and nft tables go afterwards."""
    engine = Engine(root=workdir / "engine", instance=f"hpbd-{secrets.token_hex(3)}")
    try:
        engine.images.bootstrap_busybox()
        yield engine
    finally:
        for c in engine.list(all=True):
            with contextlib.suppress(Exception):
                engine.remove(c.id, force=True)
        engine.network_teardown()


def docker_archive(engine: Engine, workdir: Path) -> Path:
    """The scratch engine's busybox as a docker archive named busybox:latest (via skopeo)."""
    oci, archive = workdir / "busybox-oci.tar", workdir / "busybox-docker.tar"
    engine.images.export("busybox:latest", oci)
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            f"oci-archive:{oci}",
            f"docker-archive:{archive}:docker.io/library/busybox:latest",
        ],
        check=True,
    )
    return archive


# ---- the measurement ----------------------------------------------------------------------
def start_containers(target: Target, count: int) -> None:
    """``count`` busybox containers running ``sleep`` on the target (4 at a time)."""

    def one(_: int) -> str:
        done = docker(target, "run", "-d", "busybox", "sleep", "86400")
        if done.returncode != 0:
            raise RuntimeError(_tail(done.stderr))
        return done.stdout.strip()

    try:
        with ThreadPoolExecutor(4) as pool:
            target.containers = list(pool.map(one, range(count)))
    except RuntimeError as exc:
        target.why = f"docker run -d failed: {exc}"
        return
    listed = docker(target, "ps", "-q").stdout.split()
    if len(listed) != count:
        target.why = f"docker ps lists {len(listed)} running containers, not {count}"


def verbs(target: Target, count: int) -> list[tuple[str, list[str]]]:
    exec_into = target.containers[0] if target.containers else "none"
    return [
        ("docker run --rm busybox true", ["run", "--rm", "busybox", "true"]),
        (
            "docker run --rm --network none busybox true",
            ["run", "--rm", "--network", "none", "busybox", "true"],
        ),
        (f"docker ps ({count} running)", ["ps"]),
        ("docker exec <c> true", ["exec", exec_into, "true"]),
    ]


def measure(targets: list[Target], runs: int, count: int) -> dict[tuple[str, str], list[float] | str]:
    """Round-robin over runs, engines and verbs: wall ms per run, or why a verb failed."""
    results: dict[tuple[str, str], list[float] | str] = {}
    for target in targets:
        for verb, _ in verbs(target, count):
            results[(verb, target.name)] = target.why or []
    for _ in range(runs):
        for target in targets:
            for verb, args in verbs(target, count):
                samples = results[(verb, target.name)]
                if isinstance(samples, str):
                    continue
                start = time.perf_counter()
                done = docker(target, *args)
                elapsed = (time.perf_counter() - start) * 1000
                if done.returncode != 0:
                    results[(verb, target.name)] = f"failed: {_tail(done.stderr)}"
                else:
                    samples.append(elapsed)
    return results


def table(results: dict[tuple[str, str], list[float] | str], targets: list[Target], count: int) -> None:
    rows = []
    for verb, _ in verbs(targets[0], count):
        base = results.get((verb, targets[0].name))
        base_median = summary(base)[1] if isinstance(base, list) and base else None
        for target in targets:
            samples = results[(verb, target.name)]
            if isinstance(samples, str) or not samples:
                rows.append([verb, target.name, "0", "-", "-", f"not run: {samples or 'no samples'}"])
                continue
            _, median, p95 = summary(samples)
            ratio = f"{median / base_median:.2f}x" if base_median else "-"
            rows.append([verb, target.name, str(len(samples)), f"{median:.1f}", f"{p95:.1f}", ratio])
    version = subprocess.run(
        [DOCKER, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"{version} ({DOCKER}), wall ms per command; cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}"
    )
    print_table(["command", "engine", "runs", "median ms", "p95 ms", "median vs HostPanel"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help="hostpanel first; any of " + ", ".join(ENGINES)
    )
    args = parser.parse_args()
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    with bench_workdir("hpbench-dockerapi-") as workdir, ExitStack() as stack:
        engine = stack.enter_context(scratch(workdir))
        archive = docker_archive(engine, workdir)
        openers: dict[str, Callable[[], contextlib.AbstractContextManager[Target]]] = {
            "hostpanel": lambda: hostpanel(engine, workdir),
            "dockerd": lambda: dockerd(workdir, archive),
            "podman": lambda: podman(workdir, archive),
        }
        targets = [stack.enter_context(openers[name]()) for name in wanted]
        for target in targets:
            if target.up:
                warm = docker(target, "run", "--rm", "busybox", "true")
                if warm.returncode != 0:
                    target.why = f"docker run failed: {_tail(warm.stderr)}"
            if target.up:
                print(
                    f"starting {args.containers} containers on {target.name} ...",
                    file=sys.stderr,
                    flush=True,
                )
                start_containers(target, args.containers)
        results = measure(targets, args.runs, args.containers)
    print(f"docker CLI against three engines, {args.runs} interleaved runs each")
    table(results, targets, args.containers)


if __name__ == "__main__":
    main()
