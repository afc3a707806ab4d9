"""An app's custom domains on its page, in a real browser (see conftest.py for the fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.live import LiveStack, StackUser, console_of

Login = Callable[[Any, StackUser], None]


def test_add_a_domain_see_how_to_prove_it_and_remove_it(
    live_stack: LiveStack, new_page: Callable[[], Any], login: Login
) -> None:
    dev = live_stack.user("dina")
    live_stack.tenant("dinaco", dev)
    live_stack.app("dinaco", "site", http_port=8080, command=["sleep", "3600"])
    page = new_page()
    login(page, dev)
    page.goto(live_stack.url("/t/dinaco/apps/site/"))
    expect(page.locator("#app-url")).to_have_attribute("href", "http://site-dinaco.localhost:8080/")

    # a bad name: the reason, and nothing added
    page.fill("#domain-name", "192.168.1.1")
    page.click("button[data-action=add-domain]")
    expect(page.locator("body")).to_contain_text("is an IP address")
    expect(page.locator("#domains tr[data-domain]")).to_have_count(0)

    page.fill("#domain-name", "Shop.Dina.TEST.")
    page.click("button[data-action=add-domain]")
    row = page.locator('#domains tr[data-domain="shop.dina.test"]')
    expect(row).to_have_attribute("data-verified", "no")
    row.locator("summary").click()
    expect(row).to_contain_text("_hostpanel-challenge.shop.dina.test")
    expect(row).to_contain_text("hostpanel-verify=")

    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button[data-action=remove-domain]").click()
    expect(page.locator("body")).to_contain_text("shop.dina.test removed")
    expect(page.locator("#domains tr[data-domain]")).to_have_count(0)
    bad = [m for m in console_of(page) if "Content Security Policy" in m or m.startswith("pageerror")]
    assert bad == []
