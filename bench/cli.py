"""The CLIs users type, as whole processes: `hpctl` beside the `docker` and `podman` CLIs.

Usage: .venv/bin/python bench/cli.py [--runs 15] [--tools hpctl,docker,podman] [--verbs ps,exec]

Each verb of issue 16 runs as a whole process, round-robin over the tools so all
see the same background load: ``ps`` (with a few containers running), ``images``,
``run --rm busybox true``, ``run -d busybox sleep``, ``logs`` (100 lines),
``exec <c> true``, ``inspect <c>``, ``stop -t 0 <c>``, ``rm <c>`` and a cached
``build`` (``FROM busybox`` + one ``RUN``, built once before timing). Every run
uses ``--network none``: the peer dockerd has no bridge (``--bridge=none``), so
it is the one network all three have. The rows give the median and p90 wall
time and the median CPU time (user + system) of the CLI process and the
children it waits for: the docker client only (its daemon's work is not in the
number), podman all of it but its conmon, hpctl all of it but its conmon.

The tools:

- hpctl: the installed command (``.venv/bin/hpctl``: the C client of
  engine/cli/hpctl.c, which hands what the daemon does not run to the Python
  hpctl, scripts/hpctl-py) on a scratch engine root and instance, with bytecode
  cached (``PYTHONPYCACHEPREFIX`` in the work directory), as an installed hpctl has,
  twice: ``hpctl`` alone (no daemon: every verb in-process) and ``hpctl+daemon``
  with the operator daemon (``hpctl docker serve``, started here on a tmp socket)
  answering, so the quick verbs (engine/cli/remote.py) and ``exec`` (through the
  Docker API's exec endpoints: engine/cli/remote_exec.py) go through it;
- docker: the stock docker CLI against dockerd from Debian's ``docker.io``,
  started here with ``--bridge=none --iptables=false --ip-masq=false`` on its
  own data root, exec root and socket, stopped afterwards (bench/docker_api.py);
- podman: the podman CLI on its own ``--root``/``--runroot`` in the work directory.

Beside ``hpctl run --rm`` the table shows the engine API's own time for the same
run (create, start, wait, remove in this warm process), and the difference.
Numbers on a shared machine are noisy: read the ratios, measured side by side.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, run_true
from bench.docker_api import (
    DOCKER,
    Target,
    bench_workdir,
    docker_archive,
    dockerd,
    ensure_installed,
    hostpanel,
    podman_storage,
    scratch,
)
from engine.engine import Engine

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("hpctl", "hpctl+daemon", "docker", "podman")
DOCKERFILE = "FROM busybox\nRUN echo cached > /cached.txt\n"
HPCTL = Path(sys.executable).with_name("hpctl")
"""The installed command (`make install`): what a user runs."""


@dataclass
class Tool:
    """One CLI: its command prefix and environment, or why it cannot run here."""

    name: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    why: str = ""
    running: list[str] = field(default_factory=list)  # ids of `run -d` containers not yet stopped
    stopped: list[str] = field(default_factory=list)  # stopped, not yet removed
    logs_source: str = ""
    keep: str = ""  # a running container for exec and inspect

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def must(self, *args: str) -> str:
        done = self.run(*args)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: {done.stderr.strip()[-300:]}")
        return done.stdout.strip()


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    failed: str = ""


def timed_call(tool: Tool, args: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU milliseconds of one whole-process call (CPU of the process and waited children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = tool.run(*args)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, done


# ---- the tools ----------------------------------------------------------------------------------
def hpctl_tool(engine: Engine, workdir: Path, daemon: Path | None = None) -> Tool:
    """`hpctl` on the scratch engine: in-process only, or with the operator daemon on ``daemon``."""
    if not HPCTL.is_file():
        return Tool("hpctl", why=f"{HPCTL} is missing: run `make install`")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(workdir / "pycache")}
    if daemon is None:
        env["HOSTPANEL_CLI_DAEMON"] = "0"
    else:
        env["HOSTPANEL_DOCKER_SOCKET"] = str(daemon)
    argv = [str(HPCTL), "--root", str(engine.paths.root), "--instance", engine.instance]
    return Tool("hpctl" if daemon is None else "hpctl+daemon", argv, env)


def _hpctl_daemon(target: Target, engine: Engine, workdir: Path) -> Tool:
    tool = hpctl_tool(engine, workdir, target.socket)
    tool.why = tool.why or target.why
    return tool


def docker_tool(target_env: dict[str, str]) -> Tool:
    # The classic builder: dockerd 20.10 with a newer client and no buildx plugin.
    return Tool("docker", [DOCKER], target_env | {"DOCKER_BUILDKIT": "0"})


def podman_tool(workdir: Path, archive: Path, stack: ExitStack) -> Tool:
    tool = Tool("podman")
    tool.why = ensure_installed("podman", "podman")
    if tool.why:
        return tool
    storage = podman_storage(workdir / "podman")
    stack.callback(storage.cleanup)
    tool.argv, tool.env = ["podman", *storage.flags], storage.env
    stack.callback(lambda: tool.run("rm", "-af", "-t", "0"))
    loaded = tool.run("load", "-i", str(archive))
    if loaded.returncode != 0:
        tool.why = f"podman load failed: {loaded.stderr.strip()[-200:]}"
    return tool


def prepare(tool: Tool, context: Path, background: int) -> None:
    """Warm the tool up and give it what the verbs act on: running containers, a log, a cached build."""
    try:
        tool.must("run", "--rm", "--network", "none", "busybox", "true")
        for _ in range(background):
            tool.must("run", "-d", "--network", "none", "busybox", "sleep", "86400")
        tool.keep = tool.must("run", "-d", "--network", "none", "busybox", "sleep", "86400").splitlines()[-1]
        tool.logs_source = tool.must(
            "run", "-d", "--network", "none", "busybox", "seq", "1", "100"
        ).splitlines()[-1]
        tool.must("wait", tool.logs_source)
        tool.must("build", "-t", "hpbench-cached:1", str(context))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        tool.why = str(exc)


# ---- the verbs ----------------------------------------------------------------------------------
def run_d(tool: Tool) -> list[str]:
    return ["run", "-d", "--network", "none", "busybox", "sleep", "86400"]


def stop_one(tool: Tool) -> list[str]:
    return ["stop", "-t", "0", tool.running[0]]


def rm_one(tool: Tool) -> list[str]:
    if not tool.stopped:  # `--verbs rm` alone: stop one to remove, untimed (args are made before the clock)
        tool.stopped.append(tool.must(*run_d(tool)).splitlines()[-1])
        tool.must("stop", "-t", "0", tool.stopped[-1])
    return ["rm", tool.stopped[0]]


VERBS: list[tuple[str, Callable[[Tool], list[str]]]] = [
    ("ps", lambda t: ["ps"]),
    ("images", lambda t: ["images"]),
    ("run --rm busybox true", lambda t: ["run", "--rm", "--network", "none", "busybox", "true"]),
    ("run -d busybox sleep", run_d),
    ("logs (100 lines)", lambda t: ["logs", t.logs_source]),
    ("exec <c> true", lambda t: ["exec", t.keep, "true"]),
    ("inspect <c>", lambda t: ["inspect", t.keep]),
    ("stop -t 0 <c>", stop_one),
    ("rm <c>", rm_one),
    ("build (cached)", lambda t: ["build", "-t", "hpbench-cached:1", t.env["HPBENCH_CONTEXT"]]),
]


def after_call(tool: Tool, verb: str, done: subprocess.CompletedProcess[str]) -> None:
    """Keep the containers the stateful verbs act on in step."""
    if verb.startswith("run -d"):
        tool.running.append(done.stdout.strip().splitlines()[-1])
    elif verb.startswith("stop"):
        tool.stopped.append(tool.running.pop(0))
    elif verb.startswith("rm"):
        tool.stopped.pop(0)


def measure(
    tools: list[Tool], engine: Engine, runs: int
) -> tuple[dict[tuple[str, str], Sample], list[float]]:
    """Round-robin: every run, every verb, every tool; plus the engine API's run --rm beside hpctl's."""
    results = {(verb, t.name): Sample(failed=t.why) for verb, _ in VERBS for t in tools}
    api: list[float] = []
    for round_ in range(runs):
        print(f"round {round_ + 1}/{runs}", file=sys.stderr, flush=True)
        for verb, args_of in VERBS:
            for tool in tools:
                sample = results[(verb, tool.name)]
                if sample.failed:
                    continue
                wall, cpu, done = timed_call(tool, args_of(tool))
                if done.returncode != 0:
                    sample.failed = f"failed ({done.returncode}): {done.stderr.strip()[-200:]}"
                    continue
                sample.wall.append(wall)
                sample.cpu.append(cpu)
                after_call(tool, verb, done)
            if verb.startswith("run --rm"):
                start = time.perf_counter()
                run_true(engine, network="none")
                api.append((time.perf_counter() - start) * 1000)
    return results, api


# ---- the table ----------------------------------------------------------------------------------
def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def median(sample: Sample) -> float | None:
    return statistics.median(sample.wall) if sample.wall and not sample.failed else None


def table(results: dict[tuple[str, str], Sample], tools: list[Tool], api: list[float], runs: int) -> None:
    names = [t.name for t in tools]
    peers = [n for n in names if not n.startswith("hpctl")]
    headers = ["verb", "tool", "median ms", "p90 ms", "CPU ms", *[f"{peer} / this" for peer in peers]]
    rows = []
    for verb, _ in VERBS:
        for name in names:
            sample = results[(verb, name)]
            ours = median(sample)
            if ours is None:
                rows.append([verb, name, "-", "-", "-", *["-" for _ in peers]])
                continue
            ratios = []
            for peer in peers:
                theirs = median(results[(verb, peer)])
                ratios.append(f"{theirs / ours:.2f}x" if theirs is not None else "-")
            cpu = statistics.median(sample.cpu)
            rows.append([verb, name, f"{ours:.0f}", f"{p90(sample.wall):.0f}", f"{cpu:.0f}", *ratios])
    print(
        f"CLIs as whole processes, {runs} interleaved runs: wall ms (median, p90) and CPU ms (median) per "
        f"call; peer / this = the peer's median over this tool's (above 1: this tool is faster); "
        f"cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}"
    )
    print_table(headers, rows)
    for name in names:
        ran = results.get(("run --rm busybox true", name))
        if name.startswith("hpctl") and api and ran is not None and (ours := median(ran)) is not None:
            own = statistics.median(api)
            print(
                f"\nrun --rm busybox true (--network none): the engine API in-process median {own:.1f} ms "
                f"(p90 {p90(api):.1f}); {name} median {ours:.1f} ms: +{ours - own:.1f} ms"
            )
    for (verb, name), sample in results.items():
        if sample.failed:
            print(f"- {name} {verb}: {sample.failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--background", type=int, default=3, help="containers running during the runs")
    parser.add_argument("--tools", default=",".join(TOOLS), help="hpctl first; any of " + ", ".join(TOOLS))
    first_words = [verb.split()[0] for verb, _ in VERBS]
    parser.add_argument("--verbs", default="", help="only these (default: all): " + ", ".join(first_words))
    args = parser.parse_args()
    if args.verbs:
        chosen = {v.strip() for v in args.verbs.split(",") if v.strip()}
        if chosen - set(first_words):
            parser.error(f"unknown verbs: {', '.join(sorted(chosen - set(first_words)))}")
        VERBS[:] = [item for item in VERBS if item[0].split()[0] in chosen]
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    with bench_workdir("hpbench-cli-") as workdir, ExitStack() as stack:
        context = workdir / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(DOCKERFILE)
        engine = stack.enter_context(scratch(workdir))
        archive = docker_archive(engine, workdir)
        daemons: list[Target] = []  # one operator daemon, shared by the hpctl+daemon tools

        def daemon() -> Target:
            if not daemons:
                daemons.append(stack.enter_context(hostpanel(engine, workdir)))
            return daemons[0]

        openers: dict[str, Callable[[], Tool]] = {
            "hpctl": lambda: hpctl_tool(engine, workdir),
            "hpctl+daemon": lambda: _hpctl_daemon(daemon(), engine, workdir),
            "docker": lambda: _docker(stack, workdir, archive),
            "podman": lambda: podman_tool(workdir, archive, stack),
        }
        tools = [openers[name]() for name in wanted]
        prepared: dict[str, Tool] = {}  # both hpctl tools share one engine: prepare it once
        for tool in tools:
            tool.env["HPBENCH_CONTEXT"] = str(context)
            family = "hpctl" if tool.name.startswith("hpctl") else tool.name
            if tool.why:
                continue
            if family in prepared:
                tool.keep, tool.logs_source = prepared[family].keep, prepared[family].logs_source
                continue
            print(f"preparing {tool.name} ...", file=sys.stderr, flush=True)
            prepare(tool, context, args.background)
            prepared[family] = tool
        results, api = measure(tools, engine, args.runs)
    table(results, tools, api, args.runs)


def _docker(stack: ExitStack, workdir: Path, archive: Path) -> Tool:
    target = stack.enter_context(dockerd(workdir, archive))
    tool = docker_tool(target.env() if target.socket is not None else dict(os.environ))
    tool.why = target.why
    return tool


if __name__ == "__main__":
    main()
