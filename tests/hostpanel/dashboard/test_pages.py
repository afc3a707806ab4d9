"""The dashboard's pages through Django's test client: rendering, scoping, roles, CSRF, CSP."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import App
from hostpanel.tenants.models import Quota, Role, Tenant
from tests.hostpanel.factories import TenantFactory

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def web(tenant: Tenant, make_app: Callable[..., App]) -> App:
    return make_app(tenant, "web", env={"MODE": "prod"})


def test_root_sends_members_to_their_first_tenant_and_admins_to_the_overview(
    tenant: Tenant, member: Callable[..., Any], admin_user: Any
) -> None:
    assert Client().get("/")["Location"].startswith("/login/")
    assert signed_in(member(tenant, Role.VIEWER)).get("/")["Location"] == "/t/acme/apps/"
    assert signed_in(admin_user).get("/")["Location"] == "/staff/"


@pytest.mark.parametrize(
    "path", ["/t/acme/apps/", "/t/acme/apps/web/", "/t/acme/deploy/", "/t/acme/usage/", "/t/acme/images/"]
)
def test_pages_render_for_a_developer_with_the_csp(
    path: str, tenant: Tenant, web: App, member: Callable[..., Any]
) -> None:
    response = signed_in(member(tenant, Role.DEVELOPER)).get(path)
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"


def test_app_page_shows_secret_names_never_values(
    tenant: Tenant, make_app: Callable[..., App], member: Callable[..., Any], admin_actor: Any
) -> None:
    from hostpanel.secrets.services import create_secret

    create_secret(admin_actor, tenant, "db-password", "hunter2-very-secret")
    make_app(tenant, "db", secrets=[{"name": "db-password", "env": "DB_PASSWORD"}])
    body = signed_in(member(tenant, Role.VIEWER)).get("/t/acme/apps/db/").content.decode()
    assert "db-password" in body and "DB_PASSWORD" in body
    assert "hunter2-very-secret" not in body


def test_live_partials_answer_htmx(tenant: Tenant, web: App, member: Callable[..., Any]) -> None:
    client = signed_in(member(tenant, Role.VIEWER))
    rows = client.get("/t/acme/apps/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-app="web"' in rows and "<html" not in rows
    live = client.get("/t/acme/apps/web/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="containers"' in live and "<html" not in live


def test_viewer_sees_no_action_and_its_posts_are_403(
    tenant: Tenant, web: App, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.VIEWER))
    assert "data-action" not in client.get("/t/acme/apps/web/").content.decode()
    for action in ("stop", "start", "restart", "scale", "rollback", "delete"):
        assert client.post(f"/t/acme/apps/web/{action}/", {"replicas": 2, "version": 1}).status_code == 403
    assert client.get("/t/acme/deploy/").status_code == 403
    web.refresh_from_db()
    assert web.state == App.State.RUNNING and web.releases.count() == 1


def test_another_tenants_pages_are_404(tenant: Tenant, web: App, member: Callable[..., Any]) -> None:
    other = TenantFactory(slug="other")
    client = signed_in(member(other, Role.OWNER))
    replica = web.replicas.get()
    for path in ("/t/acme/apps/", "/t/acme/apps/web/", f"/t/acme/containers/{replica.pk}/", "/t/acme/audit/"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/t/other/containers/{replica.pk}/").status_code == 404
    assert client.post("/t/acme/apps/web/stop/").status_code == 404


def test_forms_need_the_csrf_token(tenant: Tenant, web: App, member: Callable[..., Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(member(tenant, Role.DEVELOPER))
    assert client.post("/t/acme/apps/web/stop/").status_code == 403
    web.refresh_from_db()
    assert web.state == App.State.RUNNING


def test_stop_scale_rollback_go_through_the_services(
    tenant: Tenant, web: App, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    assert client.post("/t/acme/apps/web/scale/", {"replicas": 2}).status_code == 302
    assert web.replicas.count() == 2
    client.post("/t/acme/apps/web/rollback/", {"version": 1})
    web.refresh_from_db()
    assert web.current_release.note == "rollback to v1" and web.replicas.count() == 1
    client.post("/t/acme/apps/web/stop/")
    web.refresh_from_db()
    assert web.state == App.State.STOPPED
    assert AuditLog.objects.filter(tenant=tenant, action="app.stop", result="ok").exists()


def test_deploy_form_creates_the_app_and_shows_quota_exceeded(
    tenant: Tenant, host: Any, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    form = {
        "name": "ticker",
        "image": "busybox:latest",
        "command": "sh -c 'echo hi; sleep 60'",
        "env": "A=1\nB=two words",
        "network": "none",
        "replicas": "1",
        "cpu_millis": "100",
        "memory_mib": "32",
        "pids": "64",
        "restart_policy": "on-failure",
        "restart_max_retries": "3",
    }
    response = client.post("/t/acme/deploy/", form)
    assert response.status_code == 302 and response["Location"] == "/t/acme/apps/ticker/progress/"
    release = App.objects.get(tenant=tenant, name="ticker").current_release
    assert release.command == ["sh", "-c", "echo hi; sleep 60"] and release.env == {
        "A": "1",
        "B": "two words",
    }
    assert release.restart_policy_text == "on-failure:3" and release.memory_bytes == 32 * 1024**2
    progress = client.get("/t/acme/apps/ticker/progress/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="progress-status"' in progress

    Quota.objects.filter(tenant=tenant).update(containers=2)
    response = client.post("/t/acme/deploy/", form | {"name": "big", "replicas": "5"})
    assert response.status_code == 400
    body = response.content.decode()
    # in words and units, next to the field that asks for it (never "memory_bytes" or raw bytes)
    assert '<small class="error" data-error-for="replicas">containers: 5 asked, 1 left</small>' in body
    assert "over by" not in body and ">33554432 of 4294967296<" not in body
    assert not App.objects.filter(name="big").exists()


def test_admin_quota_editor_calls_the_service(
    tenant: Tenant, admin_user: Any, member: Callable[..., Any], sent_reconciles: list[Any]
) -> None:
    client = signed_in(admin_user)
    assert client.get("/staff/").status_code == 200
    values = {f"acme-{k}": v for k, v in {"cpu_cores": "1", "memory_gib": "1", "pids": 100}.items()}
    values |= {"acme-disk_gib": "1", "acme-containers": 3, "acme-volumes": 2}
    assert client.post("/staff/tenants/acme/quota/", values).status_code == 302
    quota = Quota.objects.get(tenant=tenant)
    assert quota.memory_bytes == 2**30 and quota.containers == 3 and quota.cpu_millis == 1000
    assert AuditLog.objects.filter(action="quota.update", result="ok").exists()
    # in units a person sets: cores and GiB, shown back the same way (never millicores or bytes)
    fractions = values | {"acme-cpu_cores": "0.5", "acme-memory_gib": "0.75", "acme-disk_gib": "2.5"}
    assert client.post("/staff/tenants/acme/quota/", fractions).status_code == 302
    quota = Quota.objects.get(tenant=tenant)
    assert (quota.cpu_millis, quota.memory_bytes, quota.disk_bytes) == (500, 768 * 2**20, 5 * 2**29)
    staff_page = client.get("/staff/").content.decode()
    assert (
        'name="acme-cpu_cores" value="0.5"' in staff_page
        and 'name="acme-memory_gib" value="0.75"' in staff_page
    )
    assert "CPU (cores)" in staff_page and "Memory (GiB)" in staff_page and ">cpu_millis<" not in staff_page
    assert "Memory 0 B / 768 MiB" in staff_page
    bad = client.post("/staff/tenants/acme/quota/", values | {"acme-memory_gib": "-1"}, follow=True)
    assert "Memory (GiB): Ensure this value is greater than or equal to 0." in bad.content.decode()
    assert Quota.objects.get(tenant=tenant).memory_bytes == 768 * 2**20
    owner = signed_in(member(tenant, Role.OWNER))
    assert owner.get("/staff/").status_code == 403
    assert owner.get("/staff/audit/").status_code == 403
    assert (
        client.get("/staff/audit/?tenant=acme&action=quota")
        .content.decode()
        .count('data-action="quota.update"')
        == 2  # the two saves; the refused one changed nothing and was not applied
    )
    assert owner.post("/staff/tenants/acme/quota/", values | {"acme-containers": 99}).status_code == 403
    assert Quota.objects.get(tenant=tenant).containers == 3


def test_admin_sets_the_egress_allow_list_on_the_staff_page(
    tenant: Tenant, admin_user: Any, sent_reconciles: list[Any]
) -> None:
    client = signed_in(admin_user)
    values = {f"acme-{k}": v for k, v in {"cpu_cores": "1", "memory_gib": "1", "pids": 100}.items()}
    values |= {"acme-disk_gib": "1", "acme-containers": 3, "acme-volumes": 2}
    values["acme-egress_allow"] = "10.20.0.0/16, 192.168.1.9"
    assert client.post("/staff/tenants/acme/quota/", values).status_code == 302
    assert Quota.objects.get(tenant=tenant).egress_allow == ["10.20.0.0/16", "192.168.1.9/32"]
    assert "10.20.0.0/16 192.168.1.9/32" in client.get("/staff/").content.decode()
    page = client.post(
        "/staff/tenants/acme/quota/", values | {"acme-egress_allow": "10.20.0.1/16"}, follow=True
    )
    assert "invalid allow-list entry" in page.content.decode()
    assert Quota.objects.get(tenant=tenant).egress_allow == ["10.20.0.0/16", "192.168.1.9/32"]


def test_audit_log_owners_only_and_filterable(tenant: Tenant, web: App, member: Callable[..., Any]) -> None:
    assert signed_in(member(tenant, Role.DEVELOPER)).get("/t/acme/audit/").status_code == 403
    owner = signed_in(member(tenant, Role.OWNER))
    body = owner.get("/t/acme/audit/?action=app.create").content.decode()
    assert 'data-action="app.create"' in body
    assert 'data-action="app.create"' not in owner.get("/t/acme/audit/?action=quota").content.decode()


def test_image_upload_answers_where_to_poll(
    tenant: Tenant, member: Callable[..., Any], settings: Any, tmp_path: Path
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.VAR_DIR = tmp_path
    client = signed_in(member(tenant, Role.DEVELOPER))
    archive = SimpleUploadedFile("img.tar", b"not really a tar but bytes")
    answer = client.post("/t/acme/images/upload/", {"name": "web:1", "archive": archive}).json()
    assert answer["reference"] == "acme/web:1"
    assert "stored" in client.get(answer["status_url"]).content.decode()
    refused = client.post(
        "/t/acme/images/upload/", {"name": "Bad Name", "archive": SimpleUploadedFile("a", b"x")}
    )
    assert refused.status_code == 400 and "name:" in refused.json()["error"]


def test_templates_have_no_inline_script_or_handler() -> None:
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
    handler = re.compile(r"\son[a-z]+\s*=", re.I)
    style_attr = re.compile(r"\sstyle\s*=", re.I)
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        assert not inline_script.search(text), f"inline <script> in {path}"
        assert not handler.search(text), f"inline event handler in {path}"
        assert not style_attr.search(text), f"inline style in {path}"


def test_live_usage_sums_each_apps_containers(
    tenant: Tenant, make_app: Callable[..., App], member: Callable[..., Any], monkeypatch: Any
) -> None:
    from hostpanel.deployments.models import Replica
    from hostpanel.errors import HostUnavailable

    make_app(tenant, "web", replicas=2)
    make_app(tenant, "api")
    Replica.objects.update(state=Replica.State.RUNNING)
    api_replica = Replica.objects.get(app__name="api")

    def fake_stats(replica_id: int, queue: str) -> dict[str, Any]:  # the agent's answer (seam)
        if replica_id == api_replica.pk:
            raise HostUnavailable("no answer")
        return {"cgroup": {"cpu_usage_ns": 5_000, "memory_usage": 1024}}

    monkeypatch.setattr("hostpanel.hosts.dispatch.fetch_stats", fake_stats)
    answer = signed_in(member(tenant, Role.VIEWER)).get("/t/acme/usage/live/").json()
    assert answer["apps"] == {"web": {"cpu_ns": 10_000, "memory_bytes": 2048, "containers": 2}}
    assert answer["unavailable"] == 1
    outsider = signed_in(member(TenantFactory(slug="else"), Role.OWNER))
    assert outsider.get("/t/acme/usage/live/").status_code == 404


def test_a_live_part_polled_after_logout_sends_the_page_to_the_login_form(tenant: Tenant) -> None:
    response = Client().get(
        "/t/acme/apps/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/t/acme/apps/"
    )
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith("/login/?next=http")


def test_deploy_form_secrets_by_name_and_bad_text_changes_nothing(
    tenant: Tenant, host: Any, member: Callable[..., Any], admin_actor: Any
) -> None:
    from hostpanel.secrets.services import create_secret

    create_secret(admin_actor, tenant, "api-key", "s3cret-value-42")
    client = signed_in(member(tenant, Role.DEVELOPER))
    page = client.get("/t/acme/deploy/").content.decode()
    assert 'value="api-key"' in page and "s3cret-value-42" not in page
    form = {
        "name": "withkey",
        "image": "busybox:latest",
        "network": "none",
        "replicas": "1",
        "cpu_millis": "100",
        "memory_mib": "32",
        "pids": "64",
        "restart_policy": "always",
        "secret": "api-key",
        "secret_env_api-key": "API_KEY",
    }
    assert client.post("/t/acme/deploy/", form).status_code == 302
    release = App.objects.get(name="withkey").current_release
    assert release.secrets == [{"name": "api-key", "env": "API_KEY"}]

    bad = client.post("/t/acme/deploy/", form | {"name": "bad", "env": "NOEQUALS"})
    assert bad.status_code == 400 and "is not KEY=value" in bad.content.decode()
    missing = client.post("/t/acme/deploy/", form | {"name": "bad", "volumes": "nope:/data"})
    assert missing.status_code == 400 and "has no volume" in missing.content.decode()
    assert not App.objects.filter(name="bad").exists()


def test_every_page_names_its_icon_and_favicon_ico_answers(
    tenant: Tenant, web: App, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.VIEWER))
    icon = '<link rel="icon" href="/static/img/favicon.svg"'
    assert icon in Client().get("/login/").content.decode()
    for path in ("/t/acme/apps/", "/t/acme/apps/web/", "/t/acme/nothing-here/"):
        assert icon in client.get(path).content.decode()
    response = Client().get("/favicon.ico")  # pages without the link (API docs, admin) ask for it
    assert response.status_code == 301 and response["Location"] == "/static/img/favicon.svg"
    assert (TEMPLATES.parent / "static" / "img" / "favicon.svg").read_text().startswith("<svg")
