"""A host agent builds from a git repository (cloned, then removed) and from a Dockerfile's text alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from hostpanel.audit.services import Actor
from hostpanel.builds import services
from hostpanel.tenants.models import Tenant
from tests.engine.unit.test_build_git import git, repo  # noqa: F401  (fixture: a real git repository)
from tests.hostpanel.builds.conftest import plain
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

# the output sink stores lines from its own thread: the tests commit for real
pytestmark = [
    pytest.mark.privileged,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("host", "published"),
]


@pytest.fixture
def allowed_repo(repo: Path, settings: Any, tmp_path: Path) -> Path:  # noqa: F811
    """The git repository, in the tenant's directory (an admin's link) under the context root."""
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "acme").symlink_to(tmp_path)
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / "roots")]
    return repo


def test_a_build_from_a_git_branch_and_directory(
    agents: EnrolledAgents, engine: Engine, tenant: Tenant, developer: Any, allowed_repo: Path
) -> None:
    (allowed_repo / "web" / "Dockerfile").write_text(
        'FROM busybox\nCOPY page.txt /page.txt\nRUN cat /page.txt\nCMD ["cat", "/page.txt"]\n'
    )
    (allowed_repo / "web" / "page.txt").write_text("from-git-main\n")
    git(allowed_repo, "add", ".")
    git(allowed_repo, "commit", "--quiet", "-m", "web")
    git(allowed_repo, "checkout", "--quiet", "-b", "other")  # HEAD elsewhere: the build asks for main
    (allowed_repo / "web" / "page.txt").write_text("from-git-other\n")
    git(allowed_repo, "commit", "--quiet", "-am", "other")
    build = services.start_build(
        Actor(user=developer), tenant, name="web:git", git_url=f"{allowed_repo}#main:web"
    )
    build = agents.build(build, engine)
    assert (build.status, build.error) == ("succeeded", "")
    texts = [line["text"] for line in build.output]
    assert f"cloning {allowed_repo} at main (depth 1)" in texts and "from-git-main" in texts
    assert "from-git-other" not in texts
    assert engine.images.resolve("acme/web:git").config.cmd == ("cat", "/page.txt")
    # the engine fixture checks that the clone is gone from the engine's tmp


def test_a_git_ref_that_vanished_fails_the_build_and_leaves_nothing(
    agents: EnrolledAgents, engine: Engine, tenant: Tenant, developer: Any, allowed_repo: Path
) -> None:
    git(allowed_repo, "branch", "short-lived")
    build = services.start_build(
        Actor(user=developer), tenant, name="web:gone", git_url=f"{allowed_repo}#short-lived"
    )
    git(allowed_repo, "branch", "-D", "short-lived")
    build = agents.build(build, engine)
    assert build.status == "failed" and "couldn't find remote ref short-lived" in build.error
    assert plain(build.output)[-1] == {"stream": "error", "text": build.error}
    assert build.image is None


def test_a_two_stage_dockerfile_text_without_a_context(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    developer: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.VAR_DIR = tmp_path
    text = (
        "FROM busybox AS make\nRUN echo compiled-$((6*7)) > /out\n"
        'FROM busybox\nCOPY --from=make /out /out\nCMD ["cat", "/out"]\n'
    )
    build = services.start_build(Actor(user=developer), tenant, name="pasted:1", dockerfile_text=text)
    build = agents.build(build, engine)
    assert (build.status, build.error) == ("succeeded", "")
    assert build.image is not None and build.image.reference == "acme/pasted:1"
    assert build.output[0]["text"] == "STEP 1/5: FROM busybox AS make"
    assert engine.images.resolve("acme/pasted:1").config.cmd == ("cat", "/out")


def test_a_dockerfile_text_replaces_the_contexts_dockerfile(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    developer: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    context = tmp_path / tenant.slug / "ctx"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM busybox\nRUN exit 9\n")
    (context / "data.txt").write_text("context-data\n")
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path)]
    text = "FROM busybox\nCOPY data.txt /data.txt\nRUN cat /data.txt\n"
    build = services.start_build(
        Actor(user=developer), tenant, name="edited:1", context_path=str(context), dockerfile_text=text
    )
    build = agents.build(build, engine)  # the agent checks the directory again under its own roots
    assert (build.status, build.error) == ("succeeded", "")
    assert "context-data" in [line["text"] for line in build.output]
    assert (context / "Dockerfile").read_text() == "FROM busybox\nRUN exit 9\n"  # untouched
