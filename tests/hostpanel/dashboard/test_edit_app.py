"""Editing an app in the dashboard: the form starts from the current release, sending it shows
the difference, confirming makes a new release; bad input and other tenants change nothing."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import App, Release
from hostpanel.tenants.models import Quota, Role, Tenant
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def web(tenant: Tenant, make_app: Callable[..., App]) -> App:
    return make_app(
        tenant,
        "web",
        command=["sh", "-c", "echo hi; sleep 60"],
        env={"MODE": "prod", "OLD": "1"},
        memory_bytes=64 * 1024**2,
    )


@pytest.fixture
def dev(tenant: Tenant, member: Callable[..., Any]) -> Client:
    return signed_in(member(tenant, Role.DEVELOPER))


def form_of(client: Client, path: str = "/t/acme/apps/web/edit/") -> dict[str, str]:
    """The edit form's fields as the page fills them (what a browser would send unchanged)."""
    body = client.get(path).content.decode()
    fields: dict[str, str] = {}
    for name, value in re.findall(r'<input type="(?:text|number)" name="(\w+)" value="([^"]*)"', body):
        fields[name] = value
    for name, value in re.findall(r'<textarea name="(\w+)"[^>]*>\n?(.*?)</textarea>', body, re.S):
        fields[name] = value
    for name, options in re.findall(r'<select name="(\w+)"[^>]*>(.*?)</select>', body, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', options)
        fields[name] = chosen.group(1) if chosen else ""
    return {k: html.unescape(v) for k, v in fields.items()}


def test_the_form_starts_from_the_current_release(web: App, dev: Client) -> None:
    fields = form_of(dev)
    assert fields["command"] == "sh -c 'echo hi; sleep 60'"  # quoted as it will run
    assert fields["env"] == "MODE=prod\nOLD=1"
    assert fields["memory_mib"] == "64" and fields["replicas"] == "1" and fields["image"] == "busybox:latest"


def test_sending_shows_the_difference_and_changes_nothing_until_confirmed(web: App, dev: Client) -> None:
    fields = form_of(dev) | {"command": "sleep 7200", "env": "MODE=staging\nNEW=yes", "memory_mib": "128"}
    response = dev.post("/t/acme/apps/web/edit/", fields)
    assert response.status_code == 200
    body = response.content.decode()
    rows = dict(re.findall(r'<tr data-change="([\w.]+)">(.*?)</tr>', body, re.S))
    assert set(rows) == {"command", "env.MODE", "env.NEW", "env.OLD", "memory_bytes"}
    assert "sh -c &#x27;echo hi; sleep 60&#x27;" in rows["command"] and "sleep 7200" in rows["command"]
    assert "64 MiB" in rows["memory_bytes"] and "128 MiB" in rows["memory_bytes"]
    assert "(not set)" in rows["env.NEW"] and "(not set)" in rows["env.OLD"]
    assert Release.objects.filter(app=web).count() == 1  # a preview makes nothing

    # confirming sends the same fields back with the version the preview was made from
    carried = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', body))
    assert carried["base_version"] == "1"
    confirm = fields | {"base_version": "1", "confirm": "1"}
    response = dev.post("/t/acme/apps/web/edit/", confirm)
    assert response.status_code == 302 and response["Location"] == "/t/acme/apps/web/"
    web.refresh_from_db()
    release = web.current_release
    assert release is not None and release.version == 2
    assert release.command == ["sleep", "7200"] and release.env == {"MODE": "staging", "NEW": "yes"}
    assert release.memory_bytes == 128 * 1024**2 and release.image == "busybox:latest"
    assert release.note.startswith("edit: command, env MODE")
    assert AuditLog.objects.filter(tenant=web.tenant, action="app.deploy", result="ok").exists()

    # the app page lists the release with what changed, and the command quoted as it runs
    page = dev.get("/t/acme/apps/web/").content.decode()
    v2 = re.search(r'<tr data-version="2">(.*?)</tr>', page, re.S)
    assert (
        v2 is not None
        and 'data-change="command"' in v2.group(1)
        and "64 MiB</code> → <code>128 MiB" in (v2.group(1))
    )
    assert '<code id="spec-command">sleep 7200</code>' in page


def test_a_confirmation_made_against_an_older_release_is_shown_again(web: App, dev: Client) -> None:
    fields = form_of(dev) | {"replicas": "2"}
    dev.post("/t/acme/apps/web/scale/", {"replicas": 3})  # someone else changed the app meanwhile
    response = dev.post("/t/acme/apps/web/edit/", fields | {"base_version": "1", "confirm": "1"})
    assert response.status_code == 409
    assert 'id="edit-stale"' in response.content.decode()
    web.refresh_from_db()
    assert web.current_release is not None and web.current_release.version == 2  # only the scale


def test_over_the_quota_says_so_in_units_next_to_the_field(web: App, dev: Client) -> None:
    Quota.objects.filter(tenant=web.tenant).update(memory_bytes=4 * 1024**3)
    fields = form_of(dev) | {"memory_mib": str(10 * 1024 * 1024)}  # 10 TiB per replica
    response = dev.post("/t/acme/apps/web/edit/", fields)
    assert response.status_code == 400
    body = response.content.decode()
    # the change adds 10 TiB - 64 MiB; 4 GiB - 64 MiB (this app's current use) is left
    assert (
        '<small class="error" data-error-for="memory_mib">memory: 10 TiB asked, 3.9 GiB left</small>' in body
    )
    assert "memory_bytes 1" not in body
    assert Release.objects.filter(app=web).count() == 1


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"env": "not a pair"}, None, "env: &#x27;not a pair&#x27; is not KEY=value"),
        ({"command": "sh -c 'unclosed"}, None, "No closing quotation"),
        (
            {"health_kind": "http", "health_port": "8080", "health_interval": "5", "health_timeout": "9"},
            "health_timeout",
            "give seconds, more than 0 and at most the interval (5 s)",
        ),
        ({"image": "evil/other:1"}, "image", "Select a valid choice"),
    ],
)
def test_bad_input_is_a_400_that_changes_nothing(
    web: App, dev: Client, change: dict[str, str], field: str | None, text: str
) -> None:
    response = dev.post("/t/acme/apps/web/edit/", form_of(dev) | change)
    assert response.status_code == 400
    body = response.content.decode()
    assert text in body
    if field:
        assert f'data-error-for="{field}">' in body
    assert Release.objects.filter(app=web).count() == 1


def test_nothing_changed_makes_no_release(web: App, dev: Client) -> None:
    response = dev.post("/t/acme/apps/web/edit/", form_of(dev) | {"confirm": "1", "base_version": "1"})
    assert response.status_code == 400 and "Nothing to change" in response.content.decode()
    assert Release.objects.filter(app=web).count() == 1


def test_viewers_and_other_tenants_cannot_edit(
    web: App, tenant: Tenant, member: Callable[..., Any], make_app: Callable[..., App]
) -> None:
    fields = form_of(signed_in(member(tenant, Role.DEVELOPER)))
    viewer = signed_in(member(tenant, Role.VIEWER))
    assert viewer.get("/t/acme/apps/web/edit/").status_code == 403
    assert (
        viewer.post("/t/acme/apps/web/edit/", fields | {"confirm": "1", "base_version": "1"}).status_code
        == 403
    )
    other = TenantFactory(slug="other")
    make_app(other, "theirs")
    outsider = signed_in(member(other, Role.OWNER))
    # another tenant's app is a 404 whether asked through its own tenant's URL or ours
    assert outsider.get("/t/acme/apps/web/edit/").status_code == 404
    assert dev_of(tenant, member).get("/t/acme/apps/theirs/edit/").status_code == 404
    assert (
        dev_of(tenant, member)
        .post("/t/acme/apps/theirs/edit/", fields | {"confirm": "1", "base_version": "1"})
        .status_code
        == 404
    )
    assert Release.objects.filter(app=web).count() == 1
    assert Release.objects.filter(app__tenant=other).count() == 1


def dev_of(tenant: Tenant, member: Callable[..., Any]) -> Client:
    return signed_in(member(tenant, Role.DEVELOPER))


def test_scale_is_audited_as_app_scale(web: App, dev: Client) -> None:
    assert dev.post("/t/acme/apps/web/scale/", {"replicas": 2}).status_code == 302
    entry = AuditLog.objects.filter(tenant=web.tenant).order_by("-pk").first()
    assert entry is not None and entry.action == "app.scale" and entry.result == "ok"


def test_the_api_lists_releases_with_what_changed(
    web: App, tenant: Tenant, member: Callable[..., Any], admin_actor: Any
) -> None:
    from rest_framework.test import APIClient

    from hostpanel.deployments import services as deployments

    deployments.deploy(admin_actor, web, env={"MODE": "prod", "OLD": "1", "NEW": "x"}, cpu_millis=1500)
    client = APIClient()
    client.force_authenticate(member(tenant, Role.VIEWER))
    page = client.get("/api/v1/tenants/acme/apps/web/releases/?page_size=1").json()
    (v2,) = page["results"]
    assert v2["version"] == 2 and v2["changes"] == [
        {"field": "env.NEW", "label": "Environment NEW", "before": "(not set)", "after": "x"},
        {"field": "cpu_millis", "label": "CPU per replica", "before": "0.25 cores", "after": "1.5 cores"},
    ]
    (v1,) = client.get(page["next"]).json()["results"]
    assert v1["version"] == 1 and v1["changes"] == []
    assert client.get("/api/v1/tenants/acme/apps/web/").json()["release"]["changes"] is None


def test_another_tenants_secret_volume_or_image_cannot_be_slipped_into_an_edit(
    web: App, dev: Client, admin_actor: Any, tmp_path: Any, settings: Any
) -> None:
    from hostpanel.secrets.services import create_secret
    from hostpanel.volumes.services import create_volume

    settings.VAR_DIR = tmp_path
    other = TenantFactory(slug="other")
    create_secret(admin_actor, other, "their-key", "their-value")
    create_volume(admin_actor, other, "their-data", 16 * 1024**2)
    fields = form_of(dev)
    # a hand-made confirmation (hidden fields are the sender's to write): every field is checked again
    for hostile, said in [
        ({"secret": "their-key", "secret_env_their-key": "KEY"}, None),  # not offered: ignored
        ({"volumes": "their-data:/data"}, "has no volume &#x27;their-data&#x27;"),
        ({"image": "other/app:1"}, "Select a valid choice"),
    ]:
        response = dev.post(
            "/t/acme/apps/web/edit/", fields | hostile | {"confirm": "1", "base_version": "1"}
        )
        if said is None:
            assert response.status_code == 400 and "Nothing to change" in response.content.decode()
        else:
            assert response.status_code == 400 and said in response.content.decode()
    assert Release.objects.filter(app=web).count() == 1
    assert "their-value" not in dev.get("/t/acme/apps/web/").content.decode()


def test_deploying_a_name_in_use_points_to_its_edit_page(web: App, dev: Client) -> None:
    fields = form_of(dev) | {"name": "web"}
    response = dev.post("/t/acme/deploy/", fields)
    assert response.status_code == 400
    assert 'href="/t/acme/apps/web/edit/" id="edit-existing">edit web</a>' in response.content.decode()
    assert Release.objects.filter(app=web).count() == 1
