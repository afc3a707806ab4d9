"""The builds API: tenant scoping and roles (the shared contract), requests checked before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Model

from hostpanel.builds.models import Build
from hostpanel.builds.services import may_watch_build
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.builds.conftest import context_tar
from tests.hostpanel.contract import TenantResourceContract
from tests.hostpanel.factories import MembershipFactory

DOCKERFILE = "FROM busybox\nRUN echo hi\n"


def upload(files: dict[str, str] | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile("context.tar", context_tar(files or {"Dockerfile": DOCKERFILE}))


class TestBuildsContract(TenantResourceContract):
    resource = "builds"
    can_update = False
    can_delete = False
    create_format = "multipart"

    def make(self, tenant: Tenant) -> Model:
        return Build.objects.create(tenant=tenant, name="web:1", reference=f"{tenant.slug}/web:1")

    def create_payload(self, tenant: Tenant) -> dict[str, Any]:
        return {"name": "web:1", "context": upload()}


def test_a_build_is_queued_on_a_host_that_is_up(
    api: Callable[[Any], Any],
    tenant: Tenant,
    developer: Any,
    host: Host,
    on_commit: Callable[[], Any],
    sent_builds: list[tuple[int, str]],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.VAR_DIR = tmp_path
    with on_commit():
        r = api(developer).post(
            f"/api/v1/tenants/{tenant.slug}/builds/",
            {"name": "web:2", "context": upload(), "build_args": '{"V": "1"}', "target": "final"},
            format="multipart",
        )
    assert r.status_code == 201, r.json()
    body = r.json()
    assert (body["reference"], body["status"], body["host"]) == ("acme/web:2", "queued", "h1")
    assert body["log_stream"] == f"/ws/logs/build/{body['id']}/"
    build = Build.objects.get(pk=body["id"])
    assert build.build_args == {"V": "1"} and build.target == "final"
    assert Path(build.context_archive).is_file() and Path(build.context_archive).is_relative_to(tmp_path)
    assert sent_builds == [(build.pk, "build.h1")]  # the build workers, not the control worker


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "Web:1"}, "name: give"),
        ({"name": "web:1", "dockerfile": "../Dockerfile"}, "dockerfile: give a path inside the context"),
        ({"name": "web:1", "build_args": "[1]"}, "expected an object"),
        ({"name": "web:1", "context_path": "/etc"}, "not both or neither"),
        ({"name": "web:1", "privileged": "true"}, "unknown field"),
    ],
)
def test_bad_build_requests_are_refused_and_store_nothing(
    api: Callable[[Any], Any],
    tenant: Tenant,
    developer: Any,
    host: Host,
    settings: Any,
    tmp_path: Path,
    payload: dict[str, Any],
    message: str,
) -> None:
    settings.VAR_DIR = tmp_path
    r = api(developer).post(
        f"/api/v1/tenants/{tenant.slug}/builds/", {**payload, "context": upload()}, format="multipart"
    )
    assert r.status_code == 400
    assert message in str(r.json())
    assert not Build.objects.exists()
    assert not list(tmp_path.rglob("context-*"))


def test_context_paths_only_under_the_tenants_own_root(
    api: Callable[[Any], Any], tenant: Tenant, developer: Any, host: Host, settings: Any, tmp_path: Path
) -> None:
    url = f"/api/v1/tenants/{tenant.slug}/builds/"
    allowed = tmp_path / "contexts"
    own = allowed / tenant.slug / "shop"
    own.mkdir(parents=True)
    (allowed / "other" / "shop").mkdir(parents=True)  # another tenant's context
    (own.parent / "to-other").symlink_to(allowed / "other" / "shop")
    r = api(developer).post(url, {"name": "web:1", "context_path": str(own)}, format="json")
    assert r.status_code == 400 and "not enabled here" in r.json()["error"]["message"]
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(allowed)]
    for outside in (
        "/etc",
        str(own / ".." / ".."),
        str(allowed),
        str(allowed / "missing"),
        str(allowed / "other" / "shop"),
        str(own.parent / "to-other"),
        str(own.parent / "missing"),
    ):
        r = api(developer).post(url, {"name": "web:1", "context_path": outside}, format="json")
        assert r.status_code == 400, outside
        message = r.json()["error"]["message"]
        assert "is not a directory in this tenant's context directories" in message
        assert message.endswith("put it there or upload a context tar instead")
    assert not Build.objects.exists()
    r = api(developer).post(url, {"name": "web:1", "context_path": str(own)}, format="json")
    assert r.status_code == 201
    assert Build.objects.get().context_path == str(own)


def test_no_host_up_is_a_clear_409(
    api: Callable[[Any], Any], tenant: Tenant, developer: Any, host: Host, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    Host.objects.update(state=Host.State.DOWN)
    r = api(developer).post(
        f"/api/v1/tenants/{tenant.slug}/builds/", {"name": "web:1", "context": upload()}, format="multipart"
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_capacity"
    assert not Build.objects.exists() and not list(tmp_path.rglob("context-*"))


def test_who_may_watch_a_build_stream(tenant: Tenant, developer: Any, db: None) -> None:
    build = Build.objects.create(tenant=tenant, name="web:1", reference="acme/web:1")
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    outsider = MembershipFactory(role=Role.OWNER).user
    assert may_watch_build(viewer, str(build.pk)) and may_watch_build(developer, str(build.pk))
    assert not may_watch_build(outsider, str(build.pk))
    assert not may_watch_build(viewer, str(build.pk + 1)) and not may_watch_build(viewer, "x")
