"""The terminal in Debian's chromium against the real stack (daphne, Redis, a host agent, crun).

A developer opens a shell in a running busybox container from its page, types
``echo`` and sees the answer; exit shows the exit code; a viewer gets no terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.live import LiveStack, StackUser, console_of

TERMINAL = ".exec-terminal"
Login = Callable[[Any, StackUser], None]


def container_page_as(live_stack: LiveStack, page: Any, login: Login, slug: str, role: str) -> None:
    """Sign a ``role`` of tenant ``slug`` in on the page of its running busybox container (app ``box``)."""
    replica = live_stack.running_app(slug, live_stack.user(f"{slug}-owner"), "box", ["sleep", "3600"])
    user = live_stack.user(f"{slug}-{role}")
    live_stack.member(slug, user, role)
    login(page, user)
    page.goto(live_stack.url(f"/t/{slug}/containers/{replica}/"))


def screen_text(page: Any) -> str:
    return str(page.locator(f"{TERMINAL} .xterm-rows").inner_text())


def csp_violations(page: Any) -> list[str]:
    return [m for m in console_of(page) if "Content Security Policy" in m or m.startswith("pageerror")]


def test_a_developer_runs_echo_in_the_container_and_sees_the_answer(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    container_page_as(live_stack, page, login, "termco", "developer")
    expect(page.locator(TERMINAL)).to_have_attribute("data-state", "idle")

    page.click(f"{TERMINAL} .exec-terminal-open")
    expect(page.locator(TERMINAL)).to_have_attribute("data-state", "connected", timeout=30_000)
    expect(page.locator(f"{TERMINAL} .exec-terminal-status")).to_have_text("connected")
    page.keyboard.type("echo answer-$((6*7)); stty size\n")
    # the answer, on a line of its own (the typed command shows the expression, not 42)
    page.wait_for_function(
        "() => /^answer-42\\s*$/m.test(document.querySelector('.exec-terminal .xterm-rows').innerText)"
        " && /^\\d+ \\d+\\s*$/m.test(document.querySelector('.exec-terminal .xterm-rows').innerText)"
    )  # and stty's answer: it may come in a later message than echo's
    rows, cols = re.search(r"^(\d+) (\d+)\s*$", screen_text(page), re.M).groups()  # type: ignore[union-attr]
    assert int(rows) > 5 and int(cols) > 20, "the terminal is sized to its box, not left at 0x0"

    page.set_viewport_size({"width": 700, "height": 700})  # a narrower window: fewer columns
    page.wait_for_timeout(300)
    page.keyboard.type("echo cols=$(stty size | cut -d' ' -f2)=\n")
    page.wait_for_function(
        "() => /^cols=\\d+=\\s*$/m.test(document.querySelector('.exec-terminal .xterm-rows').innerText)"
    )
    narrower = int(re.search(r"^cols=(\d+)=\s*$", screen_text(page), re.M).group(1))  # type: ignore[union-attr]
    assert narrower < int(cols)

    # ANSI colours: xterm's theme CSS reaches the page without 'unsafe-inline'
    page.keyboard.type("printf '\\033[31mred-%s\\033[0m\\n' $((2*3))\n")
    red = page.locator(f"{TERMINAL} .xterm-rows span", has_text=re.compile(r"^red-6$"))
    expect(red).to_have_css("color", "rgb(204, 0, 0)")

    page.keyboard.type("exit 3\n")
    expect(page.locator(f"{TERMINAL} .exec-terminal-status")).to_have_text("exited with code 3")
    expect(page.locator(TERMINAL)).to_have_attribute("data-state", "exited")
    # xterm's cell layout applies too, and no style (nor anything else) broke the CSP
    display = page.evaluate(
        "() => getComputedStyle(document.querySelector('.exec-terminal .xterm-rows span')).display"
    )
    assert display == "inline-block"
    assert csp_violations(page) == []


def test_a_viewer_gets_no_terminal(live_stack: LiveStack, page: Any, login: Login) -> None:
    container_page_as(live_stack, page, login, "termvw", "viewer")
    expect(page.get_by_text("Only developers and owners can open a terminal")).to_be_visible()
    assert page.locator(TERMINAL).count() == 0
