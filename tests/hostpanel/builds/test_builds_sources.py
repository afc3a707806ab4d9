"""Build sources beside an upload: a git repository under the admin's roots, and a Dockerfile's text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostpanel.builds.models import Build
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.engine.unit.test_build_git import repo  # noqa: F401  (fixture: a real git repository)

URL = "/api/v1/tenants/acme/builds/"


def test_git_urls_only_under_the_tenants_own_root_with_symlinks_resolved(
    api: Callable[[Any], Any],
    tenant: Tenant,
    developer: Any,
    host: Host,
    settings: Any,
    tmp_path: Path,
    repo: Path,  # noqa: F811
    sent_builds: list[tuple[int, str]],
) -> None:
    client = api(developer)
    r = client.post(URL, {"name": "web:1", "git_url": str(repo)}, format="json")
    assert r.status_code == 400 and "building from a git repository is not enabled here" in str(r.json())
    allowed = tmp_path / "allowed"
    (allowed / "acme").mkdir(parents=True)
    (allowed / "other").mkdir()
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(allowed)]
    (allowed / "acme" / "sneaky").symlink_to(repo)  # a link inside the root to a repository outside it
    (allowed / "other" / "repo").symlink_to(repo)  # another tenant's repository
    for outside in (
        str(repo),
        str(allowed / "acme" / "sneaky"),
        f"file://{allowed}/acme/sneaky#main",
        f"{allowed}/acme/../../repo",
        str(allowed / "other" / "repo"),
        str(allowed / "acme" / ".." / "other" / "repo"),
        str(allowed / "other" / "missing"),
    ):
        r = client.post(URL, {"name": "web:1", "git_url": outside}, format="json")
        assert r.status_code == 400, outside
        message = r.json()["error"]["message"]
        assert "is not a repository in this tenant's context directories" in message
        assert f"({allowed / 'acme'})" in message and str(allowed / "other") not in message.split("(")[-1]
    r = client.post(URL, {"name": "web:1", "git_url": "https://example.invalid/app.git"}, format="json")
    assert r.status_code == 400 and "remote repositories are not supported" in r.json()["error"]["message"]
    assert not Build.objects.exists() and sent_builds == []

    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "acme").symlink_to(repo)  # the admin's own link for the tenant
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(allowed), str(tmp_path / "admin")]
    r = client.post(URL, {"name": "web:1", "git_url": f"file://{repo}#main:web"}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["git_url"] == f"{repo.resolve()}#main:web"
    assert Build.objects.get().git_url == f"{repo.resolve()}#main:web"


def test_one_context_at_most_and_a_dockerfile_text_needs_none(
    api: Callable[[Any], Any], tenant: Tenant, developer: Any, host: Host, settings: Any, tmp_path: Path
) -> None:
    client = api(developer)
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path)]
    r = client.post(URL, {"name": "web:1", "git_url": str(tmp_path), "context_path": str(tmp_path)})
    assert r.status_code == 400 and "give one build context" in r.json()["error"]["message"]
    r = client.post(URL, {"name": "web:1"}, format="json")
    assert r.status_code == 400 and "or none with dockerfile_text" in r.json()["error"]["message"]
    r = client.post(URL, {"name": "web:1", "dockerfile_text": "FROM busybox\nRUN echo hi\n"}, format="json")
    assert r.status_code == 201, r.json()
    build = Build.objects.get()
    assert (build.dockerfile_text, build.context_archive, build.git_url) == (
        "FROM busybox\nRUN echo hi\n",
        "",
        "",
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"dockerfile_text": "FROM busybox\nFROBNICATE now\n"}, "dockerfile_text: Dockerfile line 2"),
        ({"dockerfile_text": "RUN echo no base\n"}, "dockerfile_text:"),
        ({"dockerfile_text": "FROM busybox\n", "dockerfile": "other/Dockerfile"}, "not both"),
        ({"dockerfile_text": "FROM busybox\n" + "#" * 300_000}, "at most"),
    ],
)
def test_a_bad_dockerfile_text_is_refused_before_anything_is_queued(
    api: Callable[[Any], Any],
    tenant: Tenant,
    developer: Any,
    host: Host,
    payload: dict[str, str],
    message: str,
    sent_builds: list[tuple[int, str]],
) -> None:
    r = api(developer).post(URL, {"name": "web:1", **payload}, format="json")
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]
    assert not Build.objects.exists() and sent_builds == []
