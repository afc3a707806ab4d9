"""The dashboard in a real browser against the real stack (see conftest.py for the fixtures)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.live import LiveStack, StackUser, console_of

TICKER = "sh -c 'while true; do echo tick $(date +%s%N); sleep 0.1; done'"
Login = Callable[[Any, StackUser], None]


def csp_violations(page: Any) -> list[str]:
    return [m for m in console_of(page) if "Content Security Policy" in m or m.startswith("pageerror")]


def test_login_lands_on_the_tenants_apps(live_stack: LiveStack, page: Any, login: Login) -> None:
    owner = live_stack.user("ann")
    live_stack.tenant("annco", owner)
    login(page, owner)
    assert page.url == live_stack.url("/t/annco/apps/")
    expect(page.locator("h1")).to_have_text("Apps")
    page.click("text=Log out")
    expect(page.locator("h1")).to_have_text("Log in")
    assert page.goto(live_stack.url("/t/annco/apps/")).url.startswith(live_stack.url("/login/"))


def test_deploy_through_the_form_see_it_run_then_stop_without_reload(
    live_stack: LiveStack, new_page: Callable[[], Any], login: Login
) -> None:
    dev = live_stack.user("dora")
    live_stack.tenant("doraco", dev)
    page = new_page()
    login(page, dev)
    page.click("text=Deploy an app")
    page.fill("#id_name", "ticker")
    page.select_option("#id_image", "busybox:latest")
    page.fill("#id_command", TICKER)
    page.fill("#id_replicas", "1")
    page.click("#deploy-submit")
    # the live progress view follows the deploy until it runs, without a reload
    assert page.url.endswith("/t/doraco/apps/ticker/progress/")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#progress-status")).to_have_attribute("data-status", "running", timeout=60_000)
    expect(page.locator("#progress-running")).to_have_text("1 / 1")
    assert page.evaluate("window.__sameDocument") is True
    engine = live_stack.agent.engine
    (container,) = [c for c in engine.list() if c.name == "doraco-ticker-0"]
    assert container.is_running
    live_stack.wait_for(
        lambda: any(
            line.text.startswith("tick ") for line in live_stack.agent.engine.logs(container.id, tail=5)
        ),
        10,
        "the ticker's lines",
    )

    # the app list shows it running; a stop made on another page reaches it without a reload
    page.goto(live_stack.url("/t/doraco/apps/"))
    row = page.locator('tr[data-app="ticker"]')
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "running")
    expect(row.locator("[data-replicas]")).to_have_text("1 / 1")
    page.evaluate("window.__sameDocument = true")
    other = page.context.new_page()
    other.goto(live_stack.url("/t/doraco/apps/ticker/"))
    other.click("button[data-action=stop]")
    expect(other.locator("button[data-action=start]")).to_be_visible()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "stopped", timeout=30_000)
    expect(row.locator("[data-replicas]")).to_have_text("0 / 0")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
    live_stack.wait_for(
        lambda: not [c for c in live_stack.agent.engine.list() if c.name.startswith("doraco-")],
        30,
        "the container to stop",
    )
    assert csp_violations(page) == [] and csp_violations(other) == []


def test_deploy_form_refuses_what_exceeds_the_quota(live_stack: LiveStack, page: Any, login: Login) -> None:
    dev = live_stack.user("quinn")
    live_stack.tenant("quinnco", dev, containers=2, cpu_millis=1000)
    login(page, dev)
    page.goto(live_stack.url("/t/quinnco/deploy/"))
    expect(page.locator('tr[data-quota="containers"]')).to_have_attribute("data-remaining", "2")
    page.fill("#id_name", "big")
    page.fill("#id_replicas", "3")
    expect(page.locator("#quota-warning")).to_contain_text("containers: 3 asked, 2 left")
    expect(page.locator('[data-quota-note="replicas"]')).to_have_text("containers: 3 asked, 2 left")
    expect(page.locator("#deploy-submit")).to_be_disabled()
    page.fill("#id_replicas", "2")
    page.fill("#id_cpu_millis", "400")
    expect(page.locator("#deploy-submit")).to_be_enabled()
    expect(page.locator("#quota-warning")).to_be_hidden()


def test_admin_lowers_a_quota_in_the_page_and_the_cgroup_follows(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    owner = live_stack.user("quota-owner")
    live_stack.tenant("quotaco", owner)
    live_stack.app("quotaco", "web")
    engine = live_stack.agent.engine
    live_stack.wait_for(
        lambda: [c for c in engine.list() if c.name == "quotaco-web-0"], 60, "the app's container"
    )
    new_limit = 768 * 1024**2
    assert engine.tenant_usage("quotaco").live.memory_limit != new_limit
    admin = live_stack.user("boss", staff=True)
    login(page, admin)
    assert page.url == live_stack.url("/staff/")
    expect(page.locator('tr[data-host="browser-h1"]')).to_contain_text("up")
    tenant = page.locator('details[data-tenant="quotaco"]')
    tenant.locator("summary").click()
    tenant.locator("#id_quotaco-memory_gib").fill("0.75")  # GiB: 768 MiB
    tenant.locator("button[data-action=save-quota]").click()
    expect(page.locator(".msg.success")).to_contain_text("Quota of quotaco saved")
    live_stack.wait_for(
        lambda: engine.tenant_usage("quotaco").live.memory_limit == new_limit,
        30,
        "the tenant cgroup's memory limit to follow the quota",
    )
    assert engine.tenant_quota("quotaco").memory == new_limit
    # the change is in the audit log, filterable
    page.goto(live_stack.url("/staff/audit/?action=quota.update&tenant=quotaco"))
    expect(page.locator('#audit tr[data-action="quota.update"]')).to_have_count(1)


def test_every_page_has_the_csp_and_no_violations(live_stack: LiveStack, page: Any, login: Login) -> None:
    owner = live_stack.user("carl", staff=False)
    live_stack.tenant("carlco", owner)
    live_stack.app("carlco", "web")
    (replica,) = live_stack.replicas_of("carlco", "web")
    admin = live_stack.user("carl-admin", staff=True)
    response = page.goto(live_stack.url("/login/"))
    paths = [
        "/t/carlco/apps/",
        "/t/carlco/apps/web/",
        "/t/carlco/deploy/",
        "/t/carlco/usage/",
        "/t/carlco/images/",
        "/t/carlco/audit/",
        "/t/carlco/docker/",
        "/t/carlco/networks/",
        "/t/carlco/networks/default/",
        f"/t/carlco/containers/{replica['id']}/",
    ]
    headers = response.headers
    login(page, owner)
    for path in paths:
        response = page.goto(live_stack.url(path))
        assert response.status == 200, path
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp and "ws://127.0.0.1:" in csp, path
        assert headers["x-frame-options"] == "DENY", path
        page.wait_for_timeout(300)  # let htmx run its first poll
    login(page, admin)
    for path in ("/staff/", "/staff/audit/"):
        response = page.goto(live_stack.url(path))
        assert response.status == 200 and "content-security-policy" in response.headers, path
    assert csp_violations(page) == []


def test_viewer_sees_no_buttons_and_a_post_is_refused(live_stack: LiveStack, page: Any, login: Login) -> None:
    owner = live_stack.user("vera-owner")
    viewer = live_stack.user("vera")
    live_stack.tenant("veraco", owner)
    live_stack.member("veraco", viewer, "viewer")
    live_stack.app("veraco", "web")
    login(page, viewer)
    page.goto(live_stack.url("/t/veraco/apps/web/"))
    expect(page.locator("#app-status")).to_be_visible()
    expect(page.locator("#containers tbody tr")).to_have_count(1)
    expect(page.locator("[data-action]")).to_have_count(0)
    expect(page.locator("text=Deploy an app")).to_have_count(0)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for action in ("stop", "restart", "delete"):
        answer = page.request.post(
            live_stack.url(f"/t/veraco/apps/web/{action}/"), headers={"X-CSRFToken": token}
        )
        assert answer.status == 403, action
    assert page.request.get(live_stack.url("/t/veraco/deploy/")).status == 403
    assert [r["state"] for r in live_stack.replicas_of("veraco", "web")] != ["stopped"]


def test_another_tenants_app_and_container_are_404(live_stack: LiveStack, page: Any, login: Login) -> None:
    alice, bob = live_stack.user("alice"), live_stack.user("bob")
    live_stack.tenant("aliceco", alice)
    live_stack.tenant("bobco", bob)
    live_stack.app("aliceco", "secret-app")
    (replica,) = live_stack.replicas_of("aliceco", "secret-app")
    login(page, bob)
    for path in (
        "/t/aliceco/apps/",
        "/t/aliceco/apps/secret-app/",
        f"/t/aliceco/containers/{replica['id']}/",
        f"/t/bobco/containers/{replica['id']}/",
    ):
        response = page.goto(live_stack.url(path))
        assert response.status == 404, path
        assert "secret-app" not in page.content()


def test_usage_page_charts_each_app_live_and_shows_quota_and_cost(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    owner = live_stack.user("uma")
    live_stack.tenant("umaco", owner)
    live_stack.app("umaco", "busy", command=["sh", "-c", "while true; do :; done"], cpu_millis=100)
    live_stack.wait_for(
        lambda: [r for r in live_stack.replicas_of("umaco", "busy") if r["state"] == "running"],
        60,
        "the app to run",
    )
    login(page, owner)
    page.goto(live_stack.url("/t/umaco/usage/"))
    expect(page.locator('tr[data-quota="containers"]')).to_have_attribute("data-used", "1")
    expect(page.locator("#month-cost")).to_contain_text("EUR")
    # the live chart takes a reading every 3 s from the agent: its legend names the app
    expect(page.locator("#live-legend li")).to_have_text(["busy"], timeout=20_000)
    drawn = page.evaluate(
        "() => { const c = document.getElementById('live-cpu');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i]) n++; } return n; }"
    )
    assert drawn > 0
    assert csp_violations(page) == []


def test_image_upload_shows_progress_then_the_stored_image(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    owner = live_stack.user("upla")
    live_stack.tenant("uplaco", owner)
    login(page, owner)
    page.goto(live_stack.url("/t/uplaco/images/"))
    archive = live_stack.workdir / "upload.tar"
    archive.write_bytes(b"x" * (2 * 1024 * 1024))  # stored as uploaded; a host checks it on first use
    page.fill("#upload-name", "site:1")
    page.set_input_files("#upload-archive", str(archive))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    expect(page.locator("#image-status")).to_have_attribute("data-reference", "uplaco/site:1", timeout=10_000)
    expect(page.locator("#image-status")).to_contain_text("stored, 2.0")
    assert csp_violations(page) == []


def test_tenant_switcher_lists_only_the_users_tenants(live_stack: LiveStack, page: Any, login: Login) -> None:
    sam = live_stack.user("sam")
    live_stack.tenant("samone", sam)
    live_stack.tenant("samtwo", sam)
    live_stack.tenant("notsams")
    login(page, sam)
    assert page.url == live_stack.url("/t/samone/apps/")
    page.click(".switcher summary")
    expect(page.locator(".switcher li a")).to_have_text(["samone", "samtwo"])
    page.click(".switcher li a >> text=samtwo")
    assert page.url == live_stack.url("/t/samtwo/apps/")
    expect(page.locator(".switcher summary")).to_contain_text("samtwo")


def test_swagger_ui_and_django_admin_run_under_the_csp(
    live_stack: LiveStack, page: Any, login: Login
) -> None:
    admin = live_stack.user("docs-admin", staff=True)
    login(page, admin)
    page.goto(live_stack.url("/api/docs/"))
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("HostPanel API", timeout=20_000)
    page.goto(live_stack.url("/admin/"))
    expect(page.locator("#site-name")).to_be_visible()
    expect(page.locator("#user-tools")).to_contain_text(re.compile("docs-admin", re.I))
    scripts = [m for m in console_of(page) if "Content Security Policy" in m and "script-src" in m]
    assert scripts == []
