"""The live-log viewer in Debian's chromium against the real stack (daphne, Redis, a host agent).

A busybox app prints ``seq N`` every 100 ms (and ``err N`` on stderr every fifth);
the numbers let the tests check that no line is lost or shown twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.live import LiveStack, StackUser, console_of

COUNTER = [
    "sh",
    "-c",
    'i=0; while true; do i=$((i+1)); echo "seq $i"; '
    '[ $((i % 5)) -eq 0 ] && echo "err $i" >&2; sleep 0.1; done',
]
VIEWER = ".log-viewer"


def shown_numbers(page: Any) -> list[int]:
    texts = page.locator(f"{VIEWER} .log-stdout").all_text_contents()
    return [int(m.group(1)) for t in texts if (m := re.fullmatch(r"seq (\d+)", t))]


def wait_for_more(page: Any, after: int) -> None:
    """Wait until the page shows ``seq N`` with N > ``after``."""
    page.wait_for_function(
        """(after) => Array.from(document.querySelectorAll('.log-viewer .log-stdout'))
             .some((e) => { const m = /^seq (\\d+)$/.exec(e.textContent); return m && +m[1] > after; })""",
        arg=after,
    )


def assert_contiguous(numbers: list[int]) -> None:
    assert numbers, "no lines shown"
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), f"lost or repeated lines: {numbers}"


def test_live_lines_pause_filter_and_resume_after_a_dropped_socket(
    live_stack: LiveStack, page: Any, login: Callable[[Any, StackUser], None]
) -> None:
    owner = live_stack.user("logan")
    replica = live_stack.running_app("logco", owner, "counter", COUNTER)
    login(page, owner)
    page.goto(live_stack.url(f"/t/logco/containers/{replica}/"))
    expect(page.locator(VIEWER)).to_have_attribute("data-state", "live")
    wait_for_more(page, 0)
    first = shown_numbers(page)[-1]
    wait_for_more(page, first + 3)  # lines keep arriving live
    assert_contiguous(shown_numbers(page))
    expect(page.locator(f"{VIEWER} .log-stderr").first).to_have_text(re.compile(r"^err \d+$"))

    # pause: nothing new in the page, the count of held lines grows; resume shows them all
    page.click(f"{VIEWER} .log-pause")
    expect(page.locator(VIEWER)).to_have_attribute("data-state", "paused")
    frozen = shown_numbers(page)
    expect(page.locator(f"{VIEWER} .log-status")).to_have_text(re.compile(r"paused: ([5-9]|\d\d+) new lines"))
    assert shown_numbers(page) == frozen
    page.click(f"{VIEWER} .log-pause")
    wait_for_more(page, frozen[-1] + 5)
    assert_contiguous(shown_numbers(page))

    # filter: only matching lines stay visible
    page.fill(f"{VIEWER} .log-filter", "err")
    visible = page.locator(f"{VIEWER} .log-line:not(.log-hidden)").all_text_contents()
    assert visible and all("err" in t for t in visible)
    page.fill(f"{VIEWER} .log-filter", "")
    expect(page.locator(f"{VIEWER} .log-line.log-hidden")).to_have_count(0)
    newest = shown_numbers(page)[-1]
    wait_for_more(page, newest + 2)
    at_bottom = "(b) => b.scrollHeight - b.scrollTop - b.clientHeight < 30"
    assert page.locator(f"{VIEWER} .log-lines").evaluate(at_bottom), "the view stopped following new lines"

    # drop the socket: the viewer reconnects and resumes after its last line
    before = shown_numbers(page)[-1]
    page.evaluate("document.querySelector('.log-viewer').hpLogs.socket.close()")
    expect(page.locator(VIEWER)).to_have_attribute("data-state", "reconnecting")
    expect(page.locator(VIEWER)).to_have_attribute("data-state", "live")
    wait_for_more(page, before + 10)
    assert_contiguous(shown_numbers(page))
    cursors = page.locator(f"{VIEWER} .log-line").evaluate_all("(es) => es.map((e) => e.dataset.cursor)")
    assert len(cursors) == len(set(cursors)), "a line shown twice"
    assert not [m for m in console_of(page) if "Content Security Policy" in m or "pageerror" in m]


def test_another_tenants_browser_cannot_read_the_logs(
    live_stack: LiveStack, new_page: Callable[[], Any], login: Callable[[Any, StackUser], None]
) -> None:
    owner = live_stack.user("lara")
    replica = live_stack.running_app("laraco", owner, "counter", COUNTER)
    intruder = live_stack.user("ivan")
    live_stack.tenant("ivanco", intruder)
    page = new_page()
    login(page, intruder)
    response = page.goto(live_stack.url(f"/t/laraco/containers/{replica}/"))
    assert response is not None and response.status == 404
    page.goto(live_stack.url("/t/ivanco/apps/"))
    outcome = page.evaluate(
        """(path) => new Promise((resolve) => {
             const messages = [];
             const ws = new WebSocket('ws://' + location.host + path);
             ws.onmessage = (e) => messages.push(e.data);
             ws.onclose = (e) => resolve({code: e.code, messages});
           })""",
        f"/ws/logs/{replica}/",
    )
    assert outcome == {"code": 4404, "messages": []}
    download = page.request.get(
        live_stack.url(f"/api/v1/tenants/laraco/containers/{replica}/logs/?download=1")
    )
    assert download.status == 404
    assert "seq " not in download.text()


FLOOD = ["awk", 'BEGIN { while (1) { i++; print "flood line " i } }']
MAX_LINES = 5000  # static/js/logs.js: line elements the page keeps (and lines held while paused)
VIEWER_STATE = """() => {
  const v = document.querySelector('.log-viewer').hpLogs;
  return {received: v.received, batches: v.batches, held: v.held.length, heldDropped: v.heldDropped,
          elements: document.querySelectorAll('.log-viewer .log-line, .log-viewer .log-marker').length,
          chunks: document.querySelectorAll('.log-viewer .log-lines > .log-chunk').length,
          firstSocket: v.socket.firstSocket === true, state: v.root.getAttribute('data-state')};
}"""
MARK_SOCKET = "() => { document.querySelector('.log-viewer').hpLogs.socket.firstSocket = true; }"


def test_a_flood_arrives_in_batches_and_the_page_stays_bounded(
    live_stack: LiveStack, page: Any, login: Callable[[Any, StackUser], None]
) -> None:
    owner = live_stack.user("flo")
    replica = live_stack.running_app("floco", owner, "flood", FLOOD)
    try:
        login(page, owner)
        page.goto(live_stack.url(f"/t/floco/containers/{replica}/"))
        # the backfill is read while the flood writes: give a loaded machine time
        expect(page.locator(VIEWER)).to_have_attribute("data-state", "live", timeout=30_000)
        page.evaluate(MARK_SOCKET)
        page.wait_for_function(
            f"() => document.querySelector('.log-viewer').hpLogs.received > {MAX_LINES + 1000}",
            timeout=120_000,
        )
        state = page.evaluate(VIEWER_STATE)
        assert 0 < state["elements"] <= MAX_LINES  # the oldest lines left the page
        # drawn a frame's lines at a time into chunks, which the browser skips out of view as one box
        assert 0 < state["chunks"] < state["elements"] / 10, state
        assert state["received"] / state["batches"] > 10, f"a message per line, or nearly: {state}"
        # paused in a flood: what is held stays bounded and counted; resume keeps the page bounded
        page.click(f"{VIEWER} .log-pause")
        page.wait_for_function(  # or the socket was replaced: a reconnect, told apart below
            "() => { const v = document.querySelector('.log-viewer').hpLogs;"
            " return v.heldDropped > 0 || !v.socket.firstSocket; }",
            timeout=120_000,
        )
        paused = page.evaluate(VIEWER_STATE)
        assert paused["firstSocket"], f"the socket closed in the flood: {paused}"
        assert paused["heldDropped"] > 0
        assert paused["held"] <= MAX_LINES
        # the status counts held and dropped lines alike: more than the page holds
        status = page.locator(f"{VIEWER} .log-status").text_content() or ""
        counted = re.fullmatch(r"paused: (\d+) new lines", status)
        assert counted and int(counted.group(1)) > MAX_LINES, status
        page.click(f"{VIEWER} .log-pause")
        page.wait_for_function(
            f"() => document.querySelector('.log-viewer').hpLogs.received > {paused['received'] + MAX_LINES}",
            timeout=120_000,
        )
        final = page.evaluate(VIEWER_STATE)
        assert final["elements"] <= MAX_LINES
        # one socket carried the whole flood: the server never closed it on a batch it sent in part
        assert final["firstSocket"] and final["state"] == "live", final
        assert not [m for m in console_of(page) if "pageerror" in m]
    finally:  # the flood must not load the rest of the session
        stop_app(live_stack, "floco", "flood")


def stop_app(live_stack: LiveStack, slug: str, name: str) -> None:
    from hostpanel.deployments import services
    from hostpanel.deployments.models import App

    with live_stack.db():
        services.delete_app(live_stack._admin(), App.objects.get(tenant__slug=slug, name=name))
