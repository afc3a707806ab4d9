"""Page load of an app with 20 containers: in Debian's chromium (Playwright) and as a plain HTTP GET.

Starts its own pieces in a scratch directory (bench/panel_stack.py): a
redis-server, the panel (daphne), one host agent on a scratch engine root and a
SQLite database. The 20 containers are real: one app of the demo tenant with
20 replicas (busybox sleeping), all running before the measurement starts.
Needs root (real containers) and /usr/bin/chromium.

Usage: .venv/bin/python bench/page_load.py [--runs 30] [--replicas 20]
Prints min/median/p95 in milliseconds of:
- the app page in chromium: navigation start to the load event (htmx and the
  stylesheet loaded; the page's first 2 s poll is not part of it);
- the same page as one plain HTTP GET with the session cookie (server time plus transfer);
- the htmx partial that the page polls every 2 s (containers and status).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import secrets
import sys
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table, summary_cells, timed  # noqa: E402
from bench.panel_stack import panel_stack, wait_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
SLEEP = ["sh", "-c", "sleep 3600"]
PASSWORD = "bench-" + secrets.token_urlsafe(9)


def http_login(base: str) -> urllib.request.OpenerDirector:
    """An opener holding a session of the demo owner, signed in through the login form."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(base + "/login/", timeout=30).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode({"username": "demo", "password": PASSWORD, "csrfmiddlewaretoken": token})
    with opener.open(base + "/login/", data=form.encode(), timeout=30) as answer:
        if "/login/" in answer.geturl():
            raise SystemExit("bench: the demo owner could not log in")
    return opener


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--replicas", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (real containers)")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (`make install`)")
    web = {"HOSTPANEL_SECRET_KEY": secrets.token_urlsafe(40), "HOSTPANEL_DEMO_PASSWORD": PASSWORD}
    with panel_stack("page", {**web, "HOSTPANEL_DEBUG": "0"}, ["--cpus", "8"]) as panel:
        base, api, db = panel.base, panel.api, panel.db
        app = {"name": "many", "image": "busybox:latest", "command": SLEEP, "replicas": args.replicas}
        api.call("POST", "/apps/", app | {"cpu_millis": 50, "memory_bytes": 16 * 1024**2})
        wait_for(
            lambda: (
                db.execute("select count(*) from deployments_replica where state = 'running'").fetchone()[0]
                == args.replicas
            ),
            300,
            f"{args.replicas} running containers",
            0.5,
        )
        path = "/t/demo/apps/many/"
        opener = http_login(base)

        def get(headers: dict[str, str]) -> None:
            request = urllib.request.Request(base + path, headers=headers)
            with opener.open(request, timeout=30) as answer:
                body = answer.read()
            assert body.count(b"data-replica-id=") == args.replicas, "the page lacks containers"

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(base_url=base).new_page()
            page.goto("/login/")
            page.fill("#id_username", "demo")
            page.fill("#id_password", PASSWORD)
            with page.expect_navigation():
                page.click("button[type=submit]")
            page.goto(path)  # warm-up: the stylesheet and htmx are cached from here on
            loads = []
            for _ in range(args.runs):
                page.goto(path, wait_until="load")
                loads.append(
                    page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return n.loadEventEnd - n.startTime; }"
                    )
                )
            rows_in_page = page.locator("#containers tbody tr").count()
            browser.close()
        http_page = timed(lambda: get({}), args.runs)
        http_partial = timed(lambda: get({"HX-Request": "true"}), args.runs)
    rows = [
        [f"chromium: navigation to load event ({rows_in_page} rows)", *summary_cells(loads)],
        ["plain HTTP GET of the page", *summary_cells(http_page)],
        ["plain HTTP GET of the htmx partial (polled every 2 s)", *summary_cells(http_partial)],
    ]
    print(f"app page, {args.replicas} running containers (real), {args.runs} runs, cores: {os.cpu_count()}")
    print_table(["page load", "min ms", "median (p50) ms", "p95 ms"], rows)


if __name__ == "__main__":
    main()
