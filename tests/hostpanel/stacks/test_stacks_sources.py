"""Stacks from an upload (a compose file, or a project tar with env_file and build contexts) and from
git (a repository under the tenant's own build-context root); the doors tried with escaping
archives and other tenants' paths: a 400 and nothing made or left behind."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from hostpanel.builds.models import Build
from hostpanel.deployments.models import App
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.stacks import services as stacks
from hostpanel.stacks.models import Stack, StackService
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db

WITH_ENV_FILE = "services:\n  web:\n    image: busybox:latest\n    env_file: [web.env]\n"


@pytest.fixture
def dev(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


@pytest.fixture(autouse=True)
def var_dir(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/stacks/{suffix}"


def project_tar(files: dict[str, bytes | str], links: dict[str, str] | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    buffer.seek(0)
    buffer.name = "project.tar.gz"
    return buffer


def left_behind(var_dir: Path, tenant: Tenant) -> list[Path]:
    directory = var_dir / "stacks" / tenant.slug
    return list(directory.iterdir()) if directory.exists() else []


def test_an_uploaded_project_reads_env_file_inside_it(
    api: Any, dev: Any, tenant: Tenant, host: Host, var_dir: Path, on_commit: Any
) -> None:
    archive = project_tar({"compose.yaml": WITH_ENV_FILE, "web.env": "MODE=from-file\n"})
    r = api(dev).post(url(tenant), {"name": "shop", "file": archive}, format="multipart")
    assert r.status_code == 201, r.json()
    assert r.json()["source_kind"] == "upload"
    assert App.objects.get().current_release.env == {"MODE": "from-file"}  # type: ignore[union-attr]
    assert len(left_behind(var_dir, tenant)) == 1  # kept for redeploys (env_file, builds)
    with on_commit():
        assert api(dev).delete(url(tenant, "shop/")).status_code == 204
    assert left_behind(var_dir, tenant) == []


def test_an_uploaded_compose_file_alone_works_and_has_no_directory(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    plain = io.BytesIO(b"services:\n  web:\n    image: busybox:latest\n")
    plain.name = "compose.yaml"
    r = api(dev).post(url(tenant), {"name": "shop", "file": plain}, format="multipart")
    assert r.status_code == 201, r.json()
    plain = io.BytesIO(WITH_ENV_FILE.encode())
    plain.name = "compose.yaml"
    r = api(dev).post(url(tenant), {"name": "other", "file": plain}, format="multipart")
    assert r.status_code == 400 and "env_file" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("files", "links"),
    [
        ({"compose.yaml": WITH_ENV_FILE, "../web.env": "X=1\n"}, {}),  # a member escaping the project
        ({"compose.yaml": WITH_ENV_FILE}, {"web.env": "/etc/shadow"}),  # a link out of it
        ({"web.env": "X=1\n"}, {"compose.yaml": "../../../../etc/passwd"}),
        ({"README": "no compose file here"}, {}),
    ],
)
def test_an_escaping_or_empty_project_is_refused_and_leaves_nothing(
    api: Any,
    dev: Any,
    tenant: Tenant,
    host: Host,
    var_dir: Path,
    files: dict[str, str],
    links: dict[str, str],
) -> None:
    r = api(dev).post(url(tenant), {"name": "shop", "file": project_tar(files, links)}, format="multipart")
    assert r.status_code == 400, r.json()
    assert not Stack.objects.exists() and not App.objects.exists()
    assert left_behind(var_dir, tenant) == []


def test_two_sources_at_once_are_refused(api: Any, dev: Any, tenant: Tenant, host: Host) -> None:
    body = {"name": "shop", "compose": "services: {}", "git": {"url": "/x"}}
    r = api(dev).post(url(tenant), body, format="json")
    assert r.status_code == 400 and "one source" in r.json()["error"]["message"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, settings: Any, tenant: Tenant) -> Path:
    roots = tmp_path / "roots"
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(roots)]
    repo = roots / tenant.slug / "shop"
    (repo / "deploy").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "deploy" / "compose.yaml").write_text(WITH_ENV_FILE)
    (repo / "deploy" / "web.env").write_text("MODE=one\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    return repo


def test_a_git_stack_reads_its_branch_and_a_redeploy_reads_it_again(
    api: Any, dev: Any, tenant: Tenant, host: Host, repo: Path, var_dir: Path, on_commit: Any
) -> None:
    body = {"name": "shop", "git": {"url": f"{repo}#main:deploy"}}
    r = api(dev).post(url(tenant), body, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["source_kind"] == "git"
    assert App.objects.get().current_release.env == {"MODE": "one"}  # type: ignore[union-attr]
    (repo / "deploy" / "web.env").write_text("MODE=two\n")
    git(repo, "commit", "-q", "-am", "two")
    with on_commit():
        assert api(dev).put(url(tenant, "shop/"), {}, format="json").status_code == 200
    assert App.objects.get().current_release.env == {"MODE": "two"}  # type: ignore[union-attr]
    assert len(left_behind(var_dir, tenant)) == 1  # the older checkout is gone


def test_a_git_path_outside_the_tenants_root_is_refused(
    api: Any, dev: Any, tenant: Tenant, host: Host, repo: Path, tmp_path: Path, var_dir: Path
) -> None:
    other = tmp_path / "roots" / "other-tenant" / "shop"
    other.mkdir(parents=True)
    git(other, "init", "-q")
    for outside in (str(other), f"{repo}/../../other-tenant/shop", "/etc", "https://example.com/x.git"):
        r = api(dev).post(url(tenant), {"name": "shop", "git": {"url": outside}}, format="json")
        assert r.status_code == 400, outside
    r = api(dev).post(url(tenant), {"name": "shop", "git": {"url": str(repo), "file": "../x"}}, format="json")
    assert r.status_code == 400
    assert not Stack.objects.exists() and left_behind(var_dir, tenant) == []


def test_a_build_service_waits_for_its_build_then_runs_the_image(
    api: Any, dev: Any, tenant: Tenant, host: Host, on_commit: Any
) -> None:
    compose = "services:\n  web:\n    build: .\n    command: [sleep, '60']\n"
    archive = project_tar({"compose.yaml": compose, "Dockerfile": "FROM busybox\n"})
    with on_commit():
        r = api(dev).post(url(tenant), {"name": "shop", "file": archive}, format="multipart")
    assert r.status_code == 201, r.json()
    service = StackService.objects.get()
    assert service.state == "building" and service.app is None
    build = Build.objects.get()
    assert build.reference == "acme/shop-web:latest" and build.tenant == tenant
    stack = Stack.objects.get()
    assert stacks.advance(stack.pk) is True  # still building
    image = Image.objects.create(tenant=tenant, reference=build.reference)
    Build.objects.filter(pk=build.pk).update(status=Build.Status.SUCCEEDED, image=image)
    assert stacks.advance(stack.pk) is False
    app = App.objects.get(name="web")
    assert app.current_release.image == "acme/shop-web:latest"  # type: ignore[union-attr]
    assert StackService.objects.get().state == "started"
