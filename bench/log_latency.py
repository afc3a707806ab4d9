"""Live-log speed: container write -> browser WebSocket message, and a flooding container.

Starts its own pieces in a scratch directory (bench/panel_stack.py): a
redis-server, the panel (daphne), one host agent, a SQLite database; headless
Debian chromium (Playwright) is the viewer, logged in with a session. Needs root.

Usage: .venv/bin/python bench/log_latency.py [--lines 300] [--window 5]

1. Latency: a container prints a line every 20 ms; the page subtracts the line's
   time (conmon stamps it, in nanoseconds, as it reads the container's pipe: busybox
   ``date`` has no ``%N``) from the time its WebSocket message arrived (same clock).
2. Flood: a container prints numbered lines as fast as it can (busybox awk). Its
   own write rate is read from the numbers in its log file over ``--window``
   seconds, first without a viewer, then with one; the viewer counts the lines it
   received and the lines the server said it skipped.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table  # noqa: E402
from bench.panel_stack import PanelStack, panel_stack, wait_for  # noqa: E402

TICKER = ["sh", "-c", 'i=0; while true; do i=$((i+1)); echo "T $i"; sleep 0.02; done']
FLOOD = ["awk", 'BEGIN { while (1) { i++; print "flood line " i } }']
CHROMIUM = "/usr/bin/chromium"

# Runs in the page: collect what one log socket receives (see hostpanel/logstream/consumers.py).
COLLECT = """([path, want, seconds]) => new Promise((resolve) => {
  const latencies = []; let lines = 0; let skipped = 0; let ready = false; let started = 0;
  const ws = new WebSocket('ws://' + location.host + path);
  const finish = () => {
    ws.close();
    resolve({latencies, lines, skipped, seconds: (performance.now() - started) / 1000});
  };
  ws.onclose = (event) => resolve({latencies, lines, skipped, closed: event.code,
                                   seconds: (performance.now() - started) / 1000});
  ws.onmessage = (event) => {
    const now = performance.timeOrigin + performance.now();
    const m = JSON.parse(event.data);
    if (m.type === 'ready') {
      ready = true;
      started = performance.now();
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
        latencies.push(now - (Date.parse(t[1] + zone) + Number(t[2].padEnd(9, '0')) / 1e6));
      }
    }
    if (want && latencies.length >= want) finish();
  };
})"""


def progress(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def last_number(log: Path) -> int:
    """The number of the newest whole ``flood line N`` record in the container's log."""
    with open(log, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - 8192))
        tail = f.read().split(b"\n")[:-1]
    for raw in reversed(tail):
        parts = raw.split(b" flood line ")
        if len(parts) == 2 and b" F" in parts[0] and parts[1].isdigit():
            return int(parts[1])
    return 0


def write_rate(log: Path, seconds: float) -> float:
    """Lines a second the flooding container writes, measured over ``seconds``."""
    start_n, start = last_number(log), time.monotonic()
    time.sleep(seconds)
    return (last_number(log) - start_n) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300, help="latency samples")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per flood measurement")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (`make install`)")
    web = {"HOSTPANEL_SECRET_KEY": secrets.token_urlsafe(40), "HOSTPANEL_DEBUG": "0"}
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
            progress("latency: collecting")
            got = page.evaluate(COLLECT, [f"/ws/logs/{ticker}/?tail=0", args.lines, 0])
            latencies = got["latencies"]
            if not latencies:
                raise SystemExit(f"no latency samples: {got} (logs in {panel.scratch})")
            api.call("DELETE", "/apps/ticker/")
            wait_for(lambda: not panel.exists("demo-ticker-0"), 60, "the ticker to go", 0.1)

            progress("flood: starting")
            flood, log = deploy("flood", FLOOD)
            wait_for(lambda: last_number(log) > 0, 30, "the flood to start", 0.1)
            alone = write_rate(log, args.window)
            start_n = last_number(log)
            viewed = page.evaluate(COLLECT, [f"/ws/logs/{flood}/?tail=0", 0, args.window])
            watched = (last_number(log) - start_n) / viewed["seconds"]
            api.call("DELETE", "/apps/flood/")
            wait_for(lambda: not panel.exists("demo-flood-0"), 60, "the flood to go", 0.1)
            browser.close()
    rows = [
        ["latency p50 (write -> browser message)", f"{percentile(latencies, 0.5):.1f} ms"],
        ["latency p99", f"{percentile(latencies, 0.99):.1f} ms"],
        ["latency max", f"{max(latencies):.1f} ms ({len(latencies)} lines)"],
        ["flood: container writes, no viewer", f"{alone:,.0f} lines/s"],
        ["flood: container writes, one viewer", f"{watched:,.0f} lines/s"],
        ["flood: one viewer receives", f"{viewed['lines'] / viewed['seconds']:,.0f} lines/s"],
        ["flood: one viewer told skipped", f"{viewed['skipped'] / viewed['seconds']:,.0f} lines/s"],
    ]
    print_table(["live logs", "value"], rows)


def _session(panel: PanelStack) -> str:
    """A session of the demo owner in the scratch database (the socket takes sessions only)."""
    panel.setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="demo"))
    return str(client.cookies["sessionid"].value)


if __name__ == "__main__":
    main()
