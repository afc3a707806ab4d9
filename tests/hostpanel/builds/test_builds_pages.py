"""The Builds pages through Django's test client: list, the new-build form, one build's output; roles,
another tenant's build, CSRF, CSP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from hostpanel.builds.models import Build
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.builds.conftest import context_tar
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db
TWO_STAGE = "FROM busybox AS make\nRUN echo made > /m\nFROM busybox\nCOPY --from=make /m /m\n"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_viewers_see_the_builds_but_no_form_and_cannot_post(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    Build.objects.create(tenant=tenant, name="web:1", reference="acme/web:1", status="failed", host=host)
    client = signed_in(member(tenant, Role.VIEWER))
    response = client.get("/t/acme/builds/")
    body = response.content.decode()
    assert response.status_code == 200 and "acme/web:1" in body and 'data-status="failed"' in body
    assert 'id="build-form"' not in body
    assert 'href="/t/acme/builds/"' in body  # the nav link
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    refused = client.post("/t/acme/builds/", {"name": "web:2", "dockerfile_text": TWO_STAGE})
    assert refused.status_code == 403 and Build.objects.count() == 1


def test_a_developer_pastes_a_dockerfile_and_lands_on_its_output(
    tenant: Tenant, host: Host, member: Callable[..., Any], sent_builds: list[tuple[int, str]]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    assert 'id="build-form"' in client.get("/t/acme/builds/").content.decode()
    response = client.post(
        "/t/acme/builds/",
        {"name": "pasted:1", "dockerfile_text": TWO_STAGE.replace("\n", "\r\n"), "build_args": "A=1\nB=x=y"},
    )
    build = Build.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/t/acme/builds/{build.pk}/"
    assert (build.reference, build.dockerfile_text, build.build_args) == (
        "acme/pasted:1",
        TWO_STAGE,
        {"A": "1", "B": "x=y"},
    )
    page = client.get(response["Location"]).content.decode()
    assert f'data-ws-path="/ws/logs/build/{build.pk}/"' in page and "js/logs.js" in page
    assert 'hx-trigger="every 1s"' in page and 'data-status="queued"' in page


def test_an_upload_through_the_form_is_a_context(
    tenant: Tenant, host: Host, member: Callable[..., Any], settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    client = signed_in(member(tenant, Role.DEVELOPER))
    upload = SimpleUploadedFile("ctx.tar", context_tar({"Dockerfile": "FROM busybox\n"}))
    response = client.post(
        "/t/acme/builds/", {"name": "up:1", "context": upload, "target": "", "dockerfile": "Dockerfile"}
    )
    assert response.status_code == 302
    assert Path(Build.objects.get().context_archive).is_file()


def test_bad_form_input_says_what_is_wrong_and_starts_nothing(
    tenant: Tenant, host: Host, member: Callable[..., Any], sent_builds: list[tuple[int, str]]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    for data, message in [
        ({"name": "web:1"}, "give one build context"),
        ({"name": "web:1", "dockerfile_text": "FROM busybox\nBOGUS x\n"}, "Dockerfile line 2"),
        ({"name": "web:1", "dockerfile_text": TWO_STAGE, "build_args": "novalue"}, "is not KEY=value"),
        ({"name": "Bad Name", "dockerfile_text": TWO_STAGE}, "name: give"),
    ]:
        response = client.post("/t/acme/builds/", data)
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    assert not Build.objects.exists() and sent_builds == []


def test_another_tenants_build_is_404_and_csrf_is_required(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    other = TenantFactory(slug="other")
    theirs = Build.objects.create(tenant=other, name="x:1", reference="other/x:1")
    client = signed_in(member(tenant, Role.OWNER))
    assert client.get(f"/t/acme/builds/{theirs.pk}/").status_code == 404
    assert client.get(f"/t/acme/builds/?from={theirs.pk}").status_code == 404
    assert client.get("/t/other/builds/").status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member(tenant, Role.DEVELOPER))
    assert strict.post("/t/acme/builds/", {"name": "a:1", "dockerfile_text": TWO_STAGE}).status_code == 403
    assert not Build.objects.filter(tenant=tenant).exists()


def test_the_polled_status_swaps_in_the_whole_output_when_the_build_ends(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    build = Build.objects.create(
        tenant=tenant, name="web:1", reference="acme/web:1", host=host, status="running"
    )
    client = signed_in(member(tenant, Role.VIEWER))
    running = client.get(f"/t/acme/builds/{build.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in running and "hx-swap-oob" not in running and "<html" not in running
    Build.objects.filter(pk=build.pk).update(
        status="failed",
        error="Dockerfile line 2: RUN failed (exit code 3)",
        output=[{"stream": "stdout", "text": "<b>made</b>"}, {"stream": "error", "text": "exit 3"}],
    )
    ended = client.get(f"/t/acme/builds/{build.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in ended and 'data-status="failed"' in ended
    assert '<div id="build-lines" hx-swap-oob="innerHTML">' in ended
    assert "&lt;b&gt;made&lt;/b&gt;" in ended and "exit code 3" in ended
    page = client.get(f"/t/acme/builds/{build.pk}/").content.decode()
    assert "data-ws-path" not in page and "Edit and build again" not in page  # ended; a viewer


def test_edit_and_build_again_fills_the_form_from_a_build(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    build = Build.objects.create(
        tenant=tenant,
        name="web:1",
        reference="acme/web:1",
        dockerfile_text=TWO_STAGE,
        build_args={"V": "2"},
        target="make",
        status="succeeded",
    )
    client = signed_in(member(tenant, Role.DEVELOPER))
    assert (
        f'href="/t/acme/builds/?from={build.pk}"'
        in client.get(f"/t/acme/builds/{build.pk}/").content.decode()
    )
    form = client.get(f"/t/acme/builds/?from={build.pk}").content.decode()
    assert "FROM busybox AS make" in form and "V=2" in form and 'value="make"' in form
