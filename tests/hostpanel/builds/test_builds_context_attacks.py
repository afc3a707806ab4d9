"""A hostile tenant's build context through the panel's build API, run by the agent's code on a real engine.

Uploaded context tars, context directories and git repositories whose Dockerfile,
.dockerignore or COPY sources are links out of the context, FIFOs or huge files:
the build fails with a clear error naming the path in the context; neither the
error nor the stored or streamed output carries the content of the file aimed at;
nothing is left behind (the engine fixture checks containers, mounts, tmp).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from engine.engine import Engine
from engine.errors import NotFound
from hostpanel.builds.models import Build
from tests.engine.unit.test_build_git import git
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("host"),
    pytest.mark.timeout(180),
]

MARKER = "SECRETMARKER"
URL = "/api/v1/tenants/acme/builds/"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file on the host whose first word a parse error used to echo."""
    path = tmp_path / "root-only"
    path.write_text(f"{MARKER} do-not-show\n")
    path.chmod(0o600)
    return path


def hostile_tar(files: dict[str, str], links: dict[str, str], fifos: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for name in fifos:
            info = tarfile.TarInfo(name)
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    return buf.getvalue()


def run_refused(
    run: Callable[[Build, Engine], Build],
    engine: Engine,
    published: list[dict[str, str]],
    build_id: int,
    message: str,
) -> Build:
    """Run the queued build as the agent does (``run``: :meth:`EnrolledAgents.build`); it fails with
    ``message``, echoing no secret."""
    build = run(Build.objects.get(pk=build_id), engine)
    assert build.status == "failed" and build.image is None
    assert message in build.error, build.error
    assert MARKER not in build.error and MARKER not in repr(build.output) and MARKER not in repr(published)
    assert build.context_archive == ""
    with pytest.raises(NotFound):
        engine.images.resolve(build.reference)
    return build


@pytest.mark.parametrize(
    ("files", "links", "fifos", "message"),
    [
        ({}, {"Dockerfile": "/etc/shadow"}, (), "'Dockerfile' leads out of the build context"),
        ({}, {"Dockerfile": "SECRET"}, (), "'Dockerfile' leads out of the build context"),
        ({}, {"Dockerfile": "/dev/zero"}, (), "'Dockerfile' leads out of the build context"),
        ({}, {}, ("Dockerfile",), "'Dockerfile' in the build context is a FIFO"),
        ({"Dockerfile": "FROM busybox\n"}, {".dockerignore": "SECRET"}, (), "cannot read .dockerignore"),
        (
            {"Dockerfile": "FROM busybox\n"},
            {},
            (".dockerignore",),
            "'.dockerignore' in the build context is a FIFO",
        ),
        ({"Dockerfile": "FROM busybox\nCOPY s /s\n"}, {"s": "SECRET"}, (), "COPY: 's' leads out"),
        ({"Dockerfile": "FROM busybox\nADD z /z\n"}, {"z": "/dev/zero"}, (), "ADD: 'z' leads out"),
        (
            {"Dockerfile": "FROM busybox\nCOPY . /app\n"},
            {},
            ("app/pipe",),
            "'app/pipe' in the build context is a FIFO",
        ),
    ],
    ids=[
        "shadow",
        "root-only",
        "dev-zero",
        "fifo",
        "ignore-link",
        "ignore-fifo",
        "copy-link",
        "add-zero",
        "copy-fifo",
    ],
)
def test_a_hostile_uploaded_context_is_refused_without_echoing_the_target(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
    secret: Path,
    files: dict[str, str],
    links: dict[str, str],
    fifos: tuple[str, ...],
    message: str,
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    links = {name: str(secret) if target == "SECRET" else target for name, target in links.items()}
    archive = SimpleUploadedFile("context.tar.gz", hostile_tar(files, links, fifos))
    r = api(developer).post(URL, {"name": "evil:1", "context": archive}, format="multipart")
    assert r.status_code == 201, r.json()
    run_refused(agents.build, engine, published, r.json()["id"], message)
    assert not list((tmp_path / "var").rglob("context-*"))  # the upload is gone


def test_an_upload_that_unpacks_over_the_bound_is_refused(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES = 200_000
    archive = hostile_tar({"Dockerfile": "FROM busybox\n", "big": "0" * 1_000_000}, {})
    assert len(archive) < 200_000  # small upload, large unpacked
    r = api(developer).post(
        URL, {"name": "evil:1", "context": SimpleUploadedFile("c.tgz", archive)}, format="multipart"
    )
    assert r.status_code == 201
    run_refused(
        agents.build,
        engine,
        published,
        r.json()["id"],
        "the context tar (HOSTPANEL_BUILD_MAX_CONTEXT_BYTES) unpacks to more than 200000 bytes",
    )


def test_a_hostile_context_directory_is_refused(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
    secret: Path,
) -> None:
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / "roots")]
    ctx = tmp_path / "roots" / "acme" / "app"
    ctx.mkdir(parents=True)
    cases: list[tuple[Callable[[], None], str]] = [
        (
            lambda: (ctx / "Dockerfile").symlink_to("/etc/shadow"),
            "'Dockerfile' leads out of the build context",
        ),
        (lambda: (ctx / "Dockerfile").symlink_to(secret), "'Dockerfile' leads out of the build context"),
        (lambda: os.mkfifo(ctx / "Dockerfile"), "'Dockerfile' in the build context is a FIFO"),
        (
            lambda: (ctx / "Dockerfile").write_text("FROM busybox\n#" + MARKER * 100 + "\n"),
            "'Dockerfile' in the build context is larger than the limit of 1000 bytes",
        ),
    ]
    settings.HOSTPANEL_BUILD_MAX_DOCKERFILE_BYTES = 1000
    for make, message in cases:
        for child in ctx.iterdir():
            child.unlink()
        make()
        r = api(developer).post(URL, {"name": "evil:1", "context_path": str(ctx)}, format="json")
        assert r.status_code == 201, r.json()
        run_refused(agents.build, engine, published, r.json()["id"], message)


def test_a_context_directory_swapped_for_a_link_after_the_check_is_not_followed(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
    secret: Path,
) -> None:
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / "roots")]
    ctx = tmp_path / "roots" / "acme" / "app"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    r = api(developer).post(
        URL, {"name": "evil:1", "context_path": str(ctx), "dockerfile": "root-only"}, format="json"
    )
    assert r.status_code == 201
    ctx.rename(tmp_path / "moved")
    ctx.symlink_to(secret.parent)  # the tenant swaps its directory for a link to the host's files
    run_refused(
        agents.build,
        engine,
        published,
        r.json()["id"],
        "is not a directory in this tenant's context directories",
    )


@pytest.mark.parametrize(
    ("agent_roots", "message"),
    [
        (["elsewhere"], "is not a directory in this tenant's context directories"),
        ([], "building from a directory is not enabled here"),
    ],
    ids=["other-roots", "no-roots"],
)
def test_a_context_directory_outside_the_agents_own_roots_is_refused(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
    agent_roots: list[str],
    message: str,
) -> None:
    """The panel allowed the directory; the host's own settings do not: the agent's check wins."""
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / "roots")]
    ctx = tmp_path / "roots" / "acme" / "app"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN echo {MARKER}\n")
    r = api(developer).post(URL, {"name": "evil:1", "context_path": str(ctx)}, format="json")
    assert r.status_code == 201, r.json()
    (tmp_path / "elsewhere" / "acme").mkdir(parents=True)
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / root) for root in agent_roots]  # the host's
    build = run_refused(agents.build, engine, published, r.json()["id"], message)
    assert not any(line["stream"] == "step" for line in build.output)  # nothing of the directory was read


def test_a_git_checkout_with_a_link_out_is_refused(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
    secret: Path,
) -> None:
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / "roots")]
    repo = tmp_path / "roots" / "acme" / "app"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    (repo / "Dockerfile").symlink_to(secret)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "evil")
    r = api(developer).post(URL, {"name": "evil:1", "git_url": f"{repo}#main"}, format="json")
    assert r.status_code == 201, r.json()
    run_refused(
        agents.build, engine, published, r.json()["id"], "'Dockerfile' leads out of the build context"
    )


def test_a_git_repository_pointing_at_another_tenants_objects_is_refused(
    agents: EnrolledAgents,
    api: Callable[[Any], Any],
    developer: Any,
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
) -> None:
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(tmp_path / "roots")]
    theirs = tmp_path / "roots" / "other" / "private"
    theirs.mkdir(parents=True)
    git(theirs, "init", "--quiet", "--initial-branch", "main")
    (theirs / "Dockerfile").write_text(f"FROM busybox\nLABEL x={MARKER}\n")
    git(theirs, "add", ".")
    git(theirs, "commit", "--quiet", "-m", "private")
    mine = tmp_path / "roots" / "acme" / "app"
    mine.mkdir(parents=True)
    (mine / ".git").write_text(f"gitdir: {theirs / '.git'}\n")  # git would read their repository
    r = api(developer).post(URL, {"name": "evil:1", "git_url": f"{mine}#main"}, format="json")
    assert r.status_code == 201, r.json()
    run_refused(agents.build, engine, published, r.json()["id"], ".git is not a directory")
    os.unlink(mine / ".git")
    git(mine, "init", "--quiet", "--initial-branch", "main")
    (mine / ".git" / "objects" / "info" / "alternates").write_text(f"{theirs / '.git' / 'objects'}\n")
    r = api(developer).post(URL, {"name": "evil:2", "git_url": f"{mine}#main"}, format="json")
    assert r.status_code == 201, r.json()
    run_refused(agents.build, engine, published, r.json()["id"], "it uses objects/info/alternates")
