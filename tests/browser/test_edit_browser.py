"""Editing an app and handling one container, in Debian's chromium against the real stack:
edit -> see the difference -> confirm -> the new release rolls out -> its URL serves the change;
the container page's CPU / memory, timestamps toggle and its own restart / stop / start."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.live import LiveStack, StackUser, console_of

Login = Callable[[Any, StackUser], None]
HTTPD = 'mkdir -p /www && echo "$MSG" > /www/index.html && exec httpd -f -p 8080 -h /www'


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def current_release(live_stack: LiveStack, slug: str, app: str) -> tuple[int, list[str]]:
    """The app's current version and the states of its replicas of that version."""
    from hostpanel.deployments.models import App, Replica

    with live_stack.db():
        row = App.objects.select_related("current_release").get(tenant__slug=slug, name=app)
        assert row.current_release is not None
        states = Replica.objects.filter(app=row, release=row.current_release).values_list("state", flat=True)
        return row.current_release.version, list(states)


def test_edit_an_app_see_the_difference_roll_it_out_and_open_its_url(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    owner = live_stack.user("edna")
    live_stack.tenant("ednaco", owner)
    live_stack.app("ednaco", "site", command=["sh", "-c", HTTPD], env={"MSG": "first"}, http_port=8080)
    live_stack.wait_for(
        lambda: current_release(live_stack, "ednaco", "site")[1] == ["running"], 60, "the site to run"
    )
    login(page, owner)
    page.goto(live_stack.url("/t/ednaco/apps/site/"))
    expect(page.locator("#spec-command")).to_have_text(f"sh -c '{HTTPD}'")  # quoted as it runs
    page.click("#edit-app")
    expect(page.locator("#id_env")).to_have_value("MSG=first")
    # the health check's fields show only once a check is chosen, and only that check's
    expect(page.locator('.field[data-field="health_port"]')).to_be_hidden()
    page.select_option("#id_health_kind", "http")
    expect(page.locator('.field[data-field="health_port"]')).to_be_visible()
    expect(page.locator('.field[data-field="health_command"]')).to_be_hidden()
    page.fill("#id_health_port", "8080")
    page.fill("#id_health_interval", "1")
    page.fill("#id_health_timeout", "1")
    # over the quota: said next to the field, in units, counting only what the edit adds
    page.fill("#id_memory_mib", str(10 * 1024 * 1024))
    expect(page.locator('[data-quota-note="memory_mib"]')).to_contain_text(
        re.compile(r"^memory: 10 TiB asked, ")
    )
    expect(page.locator("#edit-submit")).to_be_disabled()
    page.fill("#id_memory_mib", "128")  # what it has: nothing added, nothing said
    expect(page.locator('[data-quota-note="memory_mib"]')).to_be_hidden()
    expect(page.locator("#edit-submit")).to_be_enabled()
    page.fill("#id_env", "MSG=second")
    page.click("#edit-submit")

    changes = page.locator("#changes")
    expect(changes.locator('tr[data-change="env.MSG"]')).to_contain_text("first")
    expect(changes.locator('tr[data-change="env.MSG"]')).to_contain_text("second")
    expect(changes.locator('tr[data-change="health_check"]')).to_contain_text("HTTP GET :8080/")
    expect(changes.locator("tr")).to_have_count(3)  # header + the two changes, nothing else
    assert current_release(live_stack, "ednaco", "site")[0] == 1  # nothing changed before confirming
    page.click("#edit-confirm-button")

    assert page.url == live_stack.url("/t/ednaco/apps/site/")
    expect(page.locator(".msg.success")).to_contain_text("Release v2 of site made")
    expect(page.locator('tr[data-version="2"] li[data-change="env.MSG"]')).to_contain_text("second")
    # the rollout shows live on the page, without a reload, until the app runs the new release
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#app-status")).to_have_attribute("data-status", "running", timeout=60_000)
    live_stack.wait_for(
        lambda: current_release(live_stack, "ednaco", "site") == (2, ["running"]), 60, "release 2 to run"
    )
    expect(page.locator("#containers a[target=_blank]")).to_have_count(1, timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True

    # its URL (the published HTTP port, linked from the page) serves the edited release
    link = page.locator("#containers a[target=_blank]")
    live_stack.wait_for(lambda: fetch(link.get_attribute("href") or "") == "second\n", 30, "the new page")
    with page.context.expect_page() as opened:
        link.click()
    site = opened.value
    site.wait_for_load_state()
    assert site.locator("body").inner_text().strip() == "second"
    assert [m for m in console_of(page) if "Content Security Policy" in m or m.startswith("pageerror")] == []


def test_one_containers_use_timestamps_and_its_own_buttons(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    owner = live_stack.user("otto")
    ticker = ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
    replica_id = live_stack.running_app("ottoco", owner, "ticker", ticker)
    login(page, owner)
    page.goto(live_stack.url(f"/t/ottoco/containers/{replica_id}/"))
    # CPU in cores once two readings are in, memory against its limit
    expect(page.locator("#use-cpu")).to_contain_text(re.compile(r"\d+\.\d\d cores"), timeout=20_000)
    expect(page.locator("#use-memory")).to_contain_text(re.compile(r"of 128 MiB"))

    # timestamps: off by default, on with the toggle, and the line's own text stays the same
    viewer = page.locator(".log-viewer")
    expect(viewer.locator(".log-stdout").first).to_have_text("tick", timeout=20_000)
    assert "log-show-times" not in (viewer.get_attribute("class") or "")
    page.check(".log-times")
    expect(viewer).to_have_class(re.compile(r"log-show-times"))
    stamp = viewer.locator(".log-stdout").first.get_attribute("data-time") or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", stamp), stamp
    shown = viewer.locator(".log-stdout").first.evaluate("e => getComputedStyle(e, '::before').content")
    assert stamp in shown
    page.reload()
    expect(page.locator(".log-times")).to_be_checked()  # remembered in this browser

    page.click("button[data-action=container-restart]")
    expect(page.locator(".msg.success")).to_contain_text("Restart of ottoco-ticker-0")

    def restarted() -> bool:
        from hostpanel.audit.models import AuditLog
        from hostpanel.deployments.models import Replica

        with live_stack.db():
            taken = not Replica.objects.get(pk=replica_id).restart_requested
            return taken and AuditLog.objects.filter(action="container.restart", result="ok").exists()

    live_stack.wait_for(restarted, 30, "the agent to restart the container")

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action=container-stop]")
    expect(page.locator("#container-state")).to_have_text("stopped", timeout=30_000)
    expect(page.locator("#stopped-on-request")).to_be_visible()
    engine = live_stack.agent.engine
    assert not engine.get("ottoco-ticker-0").is_running
    page.click("button[data-action=container-start]")
    expect(page.locator("#container-state")).to_have_text("running", timeout=30_000)
    assert engine.get("ottoco-ticker-0").is_running
