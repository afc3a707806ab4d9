"""Live-log speed: container write -> browser, one viewer's throughput and page input delay, 100 viewers.

Starts its own pieces in a scratch directory (bench/panel_stack.py): a
redis-server, the panel (daphne), one host agent, a SQLite database; headless
Debian chromium (Playwright) is the viewer, logged in with a session. Beside it,
the same containers on Debian's dockerd (started as bench/docker_api.py starts it)
followed by ``docker logs -f``. Needs root.

Usage: .venv/bin/python bench/log_latency.py [--lines 300] [--window 5] [--viewers 100] [--no-docker]
       [--json FILE] [--trace FILE] [--apart]

1. Latency: a container prints a line every 20 ms; the page subtracts the line's
   time (conmon stamps it, in nanoseconds, as it reads the container's pipe: busybox
   ``date`` has no ``%N``) from the time its WebSocket message arrived (same clock).
   Lines written before the socket was ready (held while the backfill came) are
   counted, not timed: they measure the connection, not the live stream.
   dockerd: ``docker logs -f --timestamps`` read by this process; dockerd stamps a
   line as it reads the container's pipe, the same point.
2. Flood: a container prints numbered lines as fast as it can (busybox awk). Its
   own write rate is read from the numbers in its log file over ``--window``
   seconds: with no viewer, with the dashboard's container page open (the real
   viewer, static/js/logs.js), and with ``--viewers`` WebSockets open at once in
   another page. The page counts the lines it received and the lines the server
   said it skipped; meanwhile Playwright presses a key every 100 ms and the page
   records each keydown's delay (its handler's time minus the event's time stamp,
   as the browser queued it), the longest main-thread task, and how many line
   elements the viewer holds (bounded). dockerd: the same flood with no follower,
   one ``docker logs -f`` read by this process, and ``--viewers`` of them.

``--apart``: the flooding container and its monitor (conmon; dockerd's containerd-shim) get
CPU 0 to themselves and everything else (this process, the panel, the agent, redis, chromium,
dockerd) the other CPUs. On one 2-core machine the viewers' browser and server otherwise take
the flood's CPU, which a real host (the panel and the browsers elsewhere) would not: apart, the
flood rows say what the viewers cost the container itself. The latency and page rows then have
one core fewer: read them from a run without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table  # noqa: E402
from bench.panel_stack import PanelStack, panel_stack, wait_for  # noqa: E402

TICKER = ["sh", "-c", 'i=0; while true; do i=$((i+1)); echo "T $i"; sleep 0.02; done']
FLOOD = ["awk", 'BEGIN { while (1) { i++; print "flood line " i } }']
CHROMIUM = "/usr/bin/chromium"
KEY_EVERY = 0.1  # seconds between synthetic key presses while the viewer streams
TRACE_CATEGORIES = ["devtools.timeline", "v8", "blink", "disabled-by-default-devtools.timeline"]

# Runs in the page: collect what one log socket receives (see hostpanel/logstream/consumers.py).
COLLECT = """([path, want, seconds]) => new Promise((resolve) => {
  const latencies = []; let lines = 0; let skipped = 0; let ready = false; let started = 0;
  let readyAt = 0; let early = 0;
  const ws = new WebSocket('ws://' + location.host + path);
  const finish = () => {
    ws.close();
    resolve({latencies, lines, skipped, early, seconds: (performance.now() - started) / 1000});
  };
  ws.onclose = (event) => resolve({latencies, lines, skipped, early, closed: event.code,
                                   seconds: (performance.now() - started) / 1000});
  ws.onmessage = (event) => {
    const now = performance.timeOrigin + performance.now();
    const m = JSON.parse(event.data);
    if (m.type === 'ready') {
      ready = true;
      started = performance.now();
      readyAt = performance.timeOrigin + started;
      if (seconds) setTimeout(finish, seconds * 1000);
      return;
    }
    if (!ready) return;
    if (m.type === 'skipped') skipped += m.count;
    if (m.type !== 'lines') return;
    for (const line of m.lines) {
      lines += 1;
      // conmon's time: when it read the line from the container's pipe (RFC 3339, nanoseconds)
      const t = /^(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d)\\.(\\d+)(.*)$/.exec(line.time);
      if (t) {
        const zone = t[3] === 'Z' ? 'Z' : t[3];
        const written = Date.parse(t[1] + zone) + Number(t[2].padEnd(9, '0')) / 1e6;
        // written before the socket was ready: held while the backfill came, not a live line
        if (written < readyAt) early += 1;
        else latencies.push(now - written);
      }
    }
    if (want && latencies.length >= want) finish();
  };
})"""

# Runs in the page: open `count` log sockets that only count lines, until `window.hpStopViewers()`.
MANY = """([path, count]) => {
  window.hpMany = {lines: 0, skipped: 0, ready: 0, sockets: []};
  for (let i = 0; i < count; i++) {
    const ws = new WebSocket('ws://' + location.host + path);
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === 'ready') window.hpMany.ready += 1;
      else if (m.type === 'lines') window.hpMany.lines += m.lines.length;
      else if (m.type === 'skipped') window.hpMany.skipped += m.count;
    };
    window.hpMany.sockets.push(ws);
  }
  window.hpStopViewers = () => window.hpMany.sockets.forEach((ws) => ws.close());
}"""

# Runs in the container page: input delay of keydowns, long tasks, the viewer's counters.
PROBE = """() => {
  window.hpProbe = {delays: [], longest: 0};
  const delay = (e) => { window.hpProbe.delays.push(performance.now() - e.timeStamp); };
  window.addEventListener('keydown', delay, true);
  try {
    new PerformanceObserver((list) => {
      const probe = window.hpProbe;
      for (const entry of list.getEntries()) probe.longest = Math.max(probe.longest, entry.duration);
    }).observe({entryTypes: ['longtask']});
  } catch (e) { /* no long task timing */ }
}"""
VIEWER_STATE = """() => {
  const v = document.querySelector('.log-viewer').hpLogs;
  return {received: v.received, state: v.root.getAttribute('data-state'),
          elements: document.querySelectorAll('.log-viewer .log-line, .log-viewer .log-marker').length,
          skipped: v.skipped};
}"""


def progress(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


FLOOD_CPU = 0  # --apart: the flooding container's CPU; everything else gets the others


def keep_off_the_flood_cpu() -> None:
    """Move this process, and so everything it starts from now on, off FLOOD_CPU (--apart)."""
    others = set(range(os.cpu_count() or 1)) - {FLOOD_CPU}
    if not others:
        raise SystemExit("--apart needs at least 2 CPUs")
    os.sched_setaffinity(0, others)


def give_the_flood_cpu(root: int) -> int:
    """Pin process ``root`` and its descendants, every thread, to FLOOD_CPU; how many tasks."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pinned, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                os.sched_setaffinity(int(task.name), {FLOOD_CPU})
                pinned += 1
    if not pinned:
        raise SystemExit(f"--apart: no process {root} to pin")
    return pinned


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def last_number(log: Path) -> int:
    """The number of the newest whole ``flood line N`` record in a log file (conmon's or dockerd's)."""
    with open(log, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - 8192))
        tail = f.read().split(b"\n")[:-1]
    for raw in reversed(tail):
        parts = raw.split(b"flood line ")
        if len(parts) == 2:
            digits = parts[1].split(b"\\")[0]  # dockerd's JSON: ...flood line N\\n"
            if digits.isdigit():
                return int(digits)
    return 0


def write_rate(log: Path, seconds: float) -> float:
    """Lines a second the flooding container writes, measured over ``seconds``."""
    start_n, start = last_number(log), time.monotonic()
    time.sleep(seconds)
    return (last_number(log) - start_n) / (time.monotonic() - start)


# ---- HostPanel ------------------------------------------------------------------------------
def hostpanel(args: argparse.Namespace) -> dict[str, Any]:
    """Every HostPanel measurement, in one panel stack."""
    web = {"HOSTPANEL_SECRET_KEY": secrets.token_urlsafe(40), "HOSTPANEL_DEBUG": "0"}
    got: dict[str, Any] = {}
    with panel_stack("logs", web) as panel:
        base, api, db, engine = panel.base, panel.api, panel.db, panel.engine
        session = _session(panel)

        def deploy(name: str, command: list[str]) -> tuple[int, Path]:
            api.call("POST", "/apps/", {"name": name, "image": "busybox:latest", "command": command})
            container = wait_for(lambda: panel.running(f"demo-{name}-0"), 60, f"app {name}", 0.1)
            replica = wait_for(
                lambda: db.execute(
                    "select r.id from deployments_replica r join deployments_app a on r.app_id = a.id "
                    "where a.name = ? and r.state = 'running'",
                    (name,),
                ).fetchone(),
                60,
                f"replica of {name}",
                0.1,
            )[0]
            return int(replica), engine.containers.log_path(container)

        def remove(name: str) -> None:
            api.call("DELETE", f"/apps/{name}/")
            wait_for(lambda: not panel.exists(f"demo-{name}-0"), 60, f"{name} to go", 0.1)

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
            )
            context = browser.new_context(base_url=base)
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            page = context.new_page()
            page.goto(base + "/healthz")

            ticker, _ = deploy("ticker", TICKER)
            progress("hostpanel latency: collecting")
            sample = page.evaluate(COLLECT, [f"/ws/logs/{ticker}/?tail=0", args.lines, 0])
            got["latencies"] = sample["latencies"]
            got["early"] = sample.get("early", 0)
            if not got["latencies"]:
                raise SystemExit(f"no latency samples: {sample} (logs in {panel.scratch})")
            remove("ticker")

            progress("hostpanel flood: no viewer")
            flood, log = deploy("flood", FLOOD)
            if args.apart:
                container = panel.running("demo-flood-0")
                assert container is not None and container.conmon_pid
                give_the_flood_cpu(container.conmon_pid)  # conmon, and the container below it
            wait_for(lambda: last_number(log) > 0, 30, "the flood to start", 0.1)
            got["alone"] = write_rate(log, args.window)

            progress("hostpanel flood: one viewer (the container page)")
            viewer = context.new_page()
            viewer.goto(f"{base}/t/demo/containers/{flood}/")
            viewer.evaluate(PROBE)
            viewer.wait_for_function("() => document.querySelector('.log-viewer').dataset.state === 'live'")
            if args.trace:
                browser.start_tracing(page=viewer, categories=TRACE_CATEGORIES)
            got |= _viewed(viewer, log, args.window)
            if args.trace:
                args.trace.write_bytes(browser.stop_tracing())
                got["main_thread"] = main_thread_time(args.trace)
            viewer.close()

            progress(f"hostpanel flood: {args.viewers} viewers")
            many = context.new_page()
            many.goto(base + "/healthz")
            many.evaluate(MANY, [f"/ws/logs/{flood}/?tail=0", args.viewers])
            with contextlib.suppress(Exception):  # a stack that cannot serve them all is measured as it is
                many.wait_for_function(f"() => window.hpMany.ready >= {args.viewers}", timeout=90_000)
            got["ready"] = many.evaluate("() => window.hpMany.ready")
            start = many.evaluate("() => window.hpMany.lines")
            began = time.monotonic()
            got["many"] = write_rate(log, args.window)
            got["many_received"] = (many.evaluate("() => window.hpMany.lines") - start) / (
                time.monotonic() - began
            )
            got["followers"] = _log_readers(panel, log)
            many.evaluate("() => window.hpStopViewers()")
            many.close()
            got["after"] = write_rate(log, args.window)
            remove("flood")
            browser.close()
    return got


def _viewed(viewer: Any, log: Path, window: float) -> dict[str, Any]:
    """Stream the flood into the container page for ``window`` seconds, pressing a key every KEY_EVERY."""
    start_n, first = last_number(log), viewer.evaluate(VIEWER_STATE)
    began = time.monotonic()
    round_trips = []
    while time.monotonic() - began < window:
        pressed = time.perf_counter()
        viewer.keyboard.press("Shift")
        round_trips.append((time.perf_counter() - pressed) * 1000)
        time.sleep(KEY_EVERY)
    seconds = time.monotonic() - began
    state = viewer.evaluate(VIEWER_STATE)
    probe = viewer.evaluate("() => window.hpProbe")
    return {
        "watched": (last_number(log) - start_n) / seconds,
        "page_lines": (state["received"] - first["received"]) / seconds,
        "page_skipped": (state["skipped"] - first["skipped"]) / seconds,
        "elements": state["elements"],
        "delays": probe["delays"],
        "longest_task": probe["longest"],
        "round_trips": round_trips,
        "viewed_seconds": seconds,
    }


def main_thread_time(trace: Path) -> dict[str, float]:
    """Milliseconds of the renderer's main thread per kind of work in a chromium trace (the
    complete events directly under its tasks: script, style, layout, paint, GC), busiest first."""
    events = json.loads(trace.read_text())
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"
    }
    spans = sorted(
        (e for e in events if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in main and "dur" in e),
        key=lambda e: (e["ts"], -e["dur"]),
    )
    totals: dict[str, float] = {}
    task_end, child_end = 0.0, 0.0
    for e in spans:
        if e["name"] == "RunTask":
            task_end, child_end = e["ts"] + e["dur"], 0.0
            totals["(all tasks)"] = totals.get("(all tasks)", 0.0) + e["dur"] / 1000
        elif e["ts"] < task_end and e["ts"] >= child_end:  # a direct child of the task
            child_end = e["ts"] + e["dur"]
            totals[e["name"]] = totals.get(e["name"], 0.0) + e["dur"] / 1000
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:12])


def _log_readers(panel: PanelStack, log: Path) -> str:
    """How many open files the host agent's processes hold on the container's log (one per follower)."""
    count = 0
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"hostagent" not in cmdline or str(panel.scratch).encode() not in cmdline:
                continue
            count += sum(1 for fd in (proc / "fd").iterdir() if os.readlink(fd).startswith(str(log)))
        except (OSError, ValueError):
            continue
    return str(count)


def _session(panel: PanelStack) -> str:
    """A session of the demo owner in the scratch database (the socket takes sessions only)."""
    panel.setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="demo"))
    return str(client.cookies["sessionid"].value)


# ---- dockerd --------------------------------------------------------------------------------
@contextlib.contextmanager
def _docker_target(workdir: Path) -> Iterator[Any]:
    from bench import docker_api

    with docker_api.scratch(workdir) as engine:
        archive = docker_api.docker_archive(engine, workdir)
        with docker_api.dockerd(workdir, archive) as target:
            yield target


def _reader(
    target: Any, container: str, tail: str, on_line: Callable[[bytes], None]
) -> subprocess.Popen[bytes]:
    from bench import docker_api

    proc = subprocess.Popen(
        [docker_api.DOCKER, "logs", "-f", "--timestamps", "--tail", tail, container],
        env=target.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            on_line(raw)

    threading.Thread(target=pump, daemon=True).start()
    return proc


def dockerd(args: argparse.Namespace) -> dict[str, Any]:
    """The same measurements with dockerd and ``docker logs -f``, or why not."""
    workdir = Path(tempfile.mkdtemp(prefix="hpbench-dlogs-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, True)
        return _dockerd_in(workdir, args)


def _dockerd_in(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from bench import docker_api

    got: dict[str, Any] = {}
    with _docker_target(workdir) as target:
        if not target.up:
            return {"why": target.why}
        ticker = docker_api.docker(target, "run", "-d", "busybox", *TICKER).stdout.strip()
        latencies: list[float] = []

        def stamp(raw: bytes) -> None:
            now = time.time()
            when = raw.split(b" ", 1)[0].decode()
            seconds, _, frac = when.rstrip("Z").partition(".")
            t = datetime.fromisoformat(seconds + "+00:00").timestamp() + float("0." + (frac or "0"))
            latencies.append((now - t) * 1000)

        progress("dockerd latency: collecting")
        reader = _reader(target, ticker, "0", stamp)
        wait_for(lambda: len(latencies) >= args.lines, 60, "docker logs -f lines", 0.1)
        reader.kill()
        reader.wait()
        got["latencies"] = latencies
        docker_api.docker(target, "rm", "-f", ticker)

        progress("dockerd flood")
        flood = docker_api.docker(target, "run", "-d", "busybox", *FLOOD).stdout.strip()
        log = Path(docker_api.docker(target, "inspect", "-f", "{{.LogPath}}", flood).stdout.strip())
        if args.apart:  # its containerd-shim, and the container below it
            pid = int(docker_api.docker(target, "inspect", "-f", "{{.State.Pid}}", flood).stdout)
            give_the_flood_cpu(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]))
        wait_for(lambda: last_number(log) > 0, 30, "the flood to start", 0.1)
        got["alone"] = write_rate(log, args.window)
        count = [0]
        reader = _reader(target, flood, "0", lambda _: count.__setitem__(0, count[0] + 1))
        time.sleep(0.5)
        start, began = count[0], time.monotonic()
        got["watched"] = write_rate(log, args.window)
        got["received"] = (count[0] - start) / (time.monotonic() - began)
        reader.kill()
        reader.wait()
        readers = [
            subprocess.Popen(
                [docker_api.DOCKER, "logs", "-f", "--tail", "0", flood],
                env=target.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            for _ in range(args.viewers)
        ]
        time.sleep(2)
        got["many"] = write_rate(log, args.window)
        for proc in readers:
            proc.kill()
        for proc in readers:
            proc.wait()
        docker_api.docker(target, "rm", "-f", flood)
    return got


# ---- the table ------------------------------------------------------------------------------
def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "-"


def _rate(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def table(ours: dict[str, Any], docker: dict[str, Any], viewers: int) -> None:
    d = docker.get
    rows = [
        ["write -> viewer p50 ms", _ms(ours["latencies"], 0.5), _ms(d("latencies", []), 0.5)],
        ["write -> viewer p99 ms", _ms(ours["latencies"], 0.99), _ms(d("latencies", []), 0.99)],
        ["write -> viewer max ms", _ms(ours["latencies"], 1.0), _ms(d("latencies", []), 1.0)],
        ["lines written before the viewer was ready (not timed)", str(ours.get("early", "-")), "-"],
        ["flood: container writes lines/s, no viewer", _rate(ours["alone"]), _rate(d("alone"))],
        ["flood: container writes lines/s, one viewer", _rate(ours["watched"]), _rate(d("watched"))],
        [f"flood: container writes lines/s, {viewers} viewers", _rate(ours["many"]), _rate(d("many"))],
        ["flood: container writes lines/s, viewers gone", _rate(ours["after"]), "-"],
        ["flood: one viewer receives lines/s", _rate(ours["page_lines"]), _rate(d("received"))],
        ["flood: one viewer told skipped lines/s", _rate(ours["page_skipped"]), "-"],
        [f"flood: viewers connected (of {viewers})", str(ours["ready"]), "-"],
        [f"flood: {viewers} viewers receive lines/s (sum)", _rate(ours["many_received"]), "-"],
        [f"flood: agent's open files on the log, {viewers} viewers", ours["followers"], "-"],
        ["page: keydown input delay p50 / p99 / max ms", _delays(ours["delays"]), "-"],
        ["page: key press round trip (CDP) p50 / p99 ms", _delays(ours["round_trips"], False), "-"],
        ["page: longest main-thread task ms", f"{ours['longest_task']:.0f}", "-"],
        ["page: line elements held (bounded)", str(ours["elements"]), "-"],
    ]
    header = "dockerd 20.10, docker logs -f" if not docker.get("why") else f"dockerd: {docker['why']}"
    print_table(["live logs", "HostPanel (chromium)", header], rows)


def _delays(values: list[float], with_max: bool = True) -> str:
    if not values:
        return "-"
    cells = [_ms(values, 0.5), _ms(values, 0.99)] + ([_ms(values, 1.0)] if with_max else [])
    return " / ".join(cells) + f" ({len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300, help="latency samples")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per flood measurement")
    parser.add_argument("--viewers", type=int, default=100, help="viewers of one flooding container")
    parser.add_argument("--no-docker", action="store_true", help="HostPanel only")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--trace", type=Path, help="record chromium's trace of the one viewer; print its main thread's time"
    )
    parser.add_argument(
        "--apart",
        action="store_true",
        help="the flooding container and its monitor on CPU 0, everything else on the others",
    )
    args = parser.parse_args()
    if args.apart:
        keep_off_the_flood_cpu()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (`make install`)")
    ours = hostpanel(args)
    docker = {"why": "not measured (--no-docker)"} if args.no_docker else dockerd(args)
    if args.json:
        args.json.write_text(json.dumps({"hostpanel": ours, "dockerd": docker}))
    table(ours, docker, args.viewers)
    if ours.get("main_thread"):
        seconds = ours.get("viewed_seconds") or args.window
        print(f"chromium main thread while one viewer streams ({seconds:.1f} s), ms:")
        for name, ms in ours["main_thread"].items():
            print(f"  {name:40} {ms:9.0f}")


if __name__ == "__main__":
    main()
