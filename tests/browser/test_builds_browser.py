"""The Builds page in Debian's chromium against the real stack: a pasted two-stage Dockerfile is built
by the host agent, its RUN output arrives live over the WebSocket, and the image can then be deployed."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from engine.build.recover import BUILD_LABEL
from tests.browser.live import LiveStack, StackUser, console_of


def wait_for_test(n: int) -> str:
    """Shell that prints ``waiting-N`` and waits for the test's N-th SIGUSR1, so the test decides
    when the RUN goes on (deterministic: nothing is timed)."""
    return f"trap 'go=$((go+1))' USR1; echo waiting-{n}; while [ \"${{go:-0}}\" -lt {n} ]; do sleep 0.1; done"


COMPILE = f"{wait_for_test(1)}; echo compiling-start; {wait_for_test(2)}; echo artifact > /artifact"
DOCKERFILE = f"""\
FROM busybox AS make
RUN {COMPILE}; echo compiling-end
FROM busybox
COPY --from=make /artifact /artifact
CMD ["cat", "/artifact"]
"""
LINES = "#build-lines .log-line"


def signal_the_run(live_stack: LiveStack, build_id: int, n: int) -> None:
    """Once the build's RUN waits for its ``n``-th signal (it printed ``waiting-n``), send it."""
    from hostpanel.builds.models import Build

    def waiting() -> bool:
        with live_stack.db():
            return any(line["text"] == f"waiting-{n}" for line in Build.objects.get(pk=build_id).output)

    live_stack.wait_for(waiting, 60, f"the RUN to wait for signal {n}")
    running = [c for c in live_stack.agent.engine.list() if BUILD_LABEL in c.labels]
    assert len(running) == 1, running
    os.kill(running[0].pid, signal.SIGUSR1)


def build_id_of(page: Any) -> int:
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def problems(page: Any) -> list[str]:
    return [m for m in console_of(page) if "Content Security Policy" in m or m.startswith("pageerror")]


def test_a_pasted_dockerfile_builds_with_live_output_and_the_image_is_deployable(
    live_stack: LiveStack, page: Any, login: Callable[[Any, StackUser], None]
) -> None:
    owner = live_stack.user("bella")
    live_stack.tenant("buildco", owner)
    login(page, owner)
    page.goto(live_stack.url("/t/buildco/apps/"))
    page.click("nav.sections >> text=Builds")
    expect(page).to_have_url(live_stack.url("/t/buildco/builds/"))

    page.fill("#id_name", "twostage:1")
    page.fill("#id_dockerfile_text", DOCKERFILE)
    page.click("#build-start")
    page.wait_for_url(lambda url: "/t/buildco/builds/" in url and url.rstrip("/").split("/")[-1].isdigit())
    expect(page.locator(".log-viewer")).to_have_attribute("data-state", "live")
    build_id = build_id_of(page)
    signal_the_run(live_stack, build_id, 1)

    # the RUN's line arrives over the WebSocket (the viewer adds it; lines the page was made
    # with are .build-stored) while the build still runs, before the RUN's last line exists
    live_line = page.locator(f"{LINES}:not(.build-stored)", has_text=re.compile(r"^compiling-start$"))
    expect(live_line).to_have_count(1, timeout=60_000)
    status = page.locator("#build-state").get_attribute("data-status")
    shown = page.locator(LINES).all_text_contents()
    assert status in ("queued", "running"), (status, shown)
    assert "compiling-end" not in shown
    expect(page.locator(LINES, has_text=re.compile(r"^STEP 1/5: FROM busybox AS make$"))).to_have_count(1)

    # a reload while it runs: the stored lines, then the live ones, without gap or repeat
    page.reload()
    expect(page.locator(f"{LINES}.build-stored", has_text=re.compile(r"^compiling-start$"))).to_have_count(1)
    expect(page.locator(".log-viewer")).to_have_attribute("data-state", "live")
    signal_the_run(live_stack, build_id, 2)
    expect(page.locator("#build-state")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(page.locator("#build-image")).to_have_text("buildco/twostage:1")
    texts = page.locator(LINES).all_text_contents()
    cursors = page.locator(LINES).evaluate_all("els => els.map(e => Number(e.dataset.cursor))")
    assert cursors == list(range(1, len(cursors) + 1)), texts
    assert texts.count("compiling-start") == 1 and texts.count("compiling-end") == 1, texts
    assert "COMMIT buildco/twostage:1" in texts

    page.click("#build-status >> text=deploy it")
    expect(page).to_have_url(live_stack.url("/t/buildco/deploy/"))
    options = page.locator("#id_image option").all_text_contents()
    assert "buildco/twostage:1" in options, options
    assert problems(page) == []


HELD_DOCKERFILE = f"""\
FROM busybox
RUN echo before-socket; {wait_for_test(1)}; echo after-socket; {wait_for_test(2)}
"""


def test_lines_printed_before_the_socket_started_are_filled_in_once(
    live_stack: LiveStack, page: Any, login: Callable[[Any, StackUser], None]
) -> None:
    """The page holds its WebSocket until the build has printed (and stored) its first RUN line:
    the first live line then follows a gap, which the page fills from the build's API."""
    from hostpanel.builds.models import Build

    owner = live_stack.user("gilda")
    live_stack.tenant("gapco", owner)
    login(page, owner)
    held: list[Any] = []
    page.route_web_socket(re.compile(r"/ws/logs/build/\d+/"), lambda ws: held.append(ws))
    page.goto(live_stack.url("/t/gapco/builds/"))
    page.fill("#id_name", "gap:1")
    page.fill("#id_dockerfile_text", HELD_DOCKERFILE)
    page.click("#build-start")
    page.wait_for_url(re.compile(r"/t/gapco/builds/\d+/$"))
    build_id = build_id_of(page)

    def stored_texts() -> list[str]:
        with live_stack.db():
            return [line["text"] for line in Build.objects.get(pk=build_id).output]

    live_stack.wait_for(lambda: "waiting-1" in stored_texts(), 60, "the first RUN lines to be stored")
    assert "before-socket" not in page.locator(LINES).all_text_contents()
    assert len(held) == 1
    held[0].connect_to_server()  # from now on the page receives live lines
    expect(page.locator(".log-viewer")).to_have_attribute("data-state", "live")
    signal_the_run(live_stack, build_id, 1)  # the RUN prints its next line, then waits again

    live = page.locator(f"{LINES}:not(.build-stored)", has_text=re.compile(r"^after-socket$"))
    expect(live).to_have_count(1, timeout=60_000)
    expect(page.locator(f"{LINES}.build-stored", has_text=re.compile(r"^before-socket$"))).to_have_count(1)
    texts = page.locator(LINES).all_text_contents()
    cursors = page.locator(LINES).evaluate_all("els => els.map(e => Number(e.dataset.cursor))")
    assert live.count() == 1  # still the live line (the build cannot end before the next signal)
    assert cursors == list(range(1, len(cursors) + 1)), texts
    assert texts.count("before-socket") == 1 and texts.index("before-socket") < texts.index("after-socket")
    signal_the_run(live_stack, build_id, 2)
    expect(page.locator("#build-state")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    assert problems(page) == []
