"""The Stacks pages in Debian's chromium against the real stack: a compose file pasted in the "new
stack" form comes up (every service running, the dependent one after its dependency is healthy),
each service links to its app, and the stack is taken down from its page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.live import LiveStack, StackUser, console_of

COMPOSE = """\
services:
  kv:
    image: busybox:latest
    command: ["sh", "-c", "touch /tmp/ready && exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  web:
    image: busybox:latest
    command: ["sh", "-c", "exec sleep 3600"]
    depends_on:
      kv: {condition: service_healthy}
"""


def test_a_pasted_compose_file_comes_up_and_goes_down(
    live_stack: LiveStack, page: Any, login: Callable[[Any, StackUser], None]
) -> None:
    owner = live_stack.user("stella")
    live_stack.tenant("stackco", owner)
    login(page, owner)
    page.goto(live_stack.url("/t/stackco/apps/"))
    page.click("nav.sections >> text=Stacks")
    expect(page).to_have_url(live_stack.url("/t/stackco/stacks/"))

    page.fill("#id_name", "shop")
    page.fill("#id_compose", COMPOSE)
    page.click("#stack-deploy")
    page.wait_for_url(live_stack.url("/t/stackco/stacks/shop/"))
    # the page follows the stack live (htmx) until every service runs
    expect(page.locator("#stack-status")).to_have_attribute("data-status", "running", timeout=90_000)
    for service in ("kv", "web"):
        row = page.locator(f'tr[data-service="{service}"]')
        expect(row.locator("[data-state]")).to_have_attribute("data-state", "started")
        expect(row.locator("[data-status]").last).to_have_attribute("data-status", "running", timeout=30_000)
        expect(row.locator("[data-replicas]")).to_have_text("1 / 1")
    with live_stack.db():
        from hostpanel.deployments.models import Replica

        kv = Replica.objects.get(app__tenant__slug="stackco", app__name="kv")
        web = Replica.objects.get(app__tenant__slug="stackco", app__name="web")
        assert kv.health == "healthy" and web.state == "running"
    running = {c.name for c in live_stack.agent.engine.list()}
    assert {"stackco-kv-0", "stackco-web-0"} <= running

    page.click('tr[data-service="web"] >> a[href$="/apps/web/"]')
    expect(page).to_have_url(live_stack.url("/t/stackco/apps/web/"))
    page.goto(live_stack.url("/t/stackco/stacks/shop/"))

    page.click("#stack-down")
    expect(page).to_have_url(live_stack.url("/t/stackco/stacks/"))
    expect(page.locator('tr[data-stack="shop"]')).to_have_count(0)
    live_stack.wait_for(
        lambda: not [c for c in live_stack.agent.engine.list(all=True) if c.tenant == "stackco"],
        60,
        "the stack's containers to be removed",
    )
    assert not [m for m in console_of(page) if "Content Security Policy" in m or m.startswith("pageerror")]
