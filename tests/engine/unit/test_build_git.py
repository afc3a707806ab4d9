"""Build contexts from a git repository on this machine: parsing PATH#REF:DIR and shallow clones."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.build.git import GitContext, clone_context, parse_git_url
from engine.errors import InvalidSpec


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real repository: main has two commits (tag v1 on the first), a web/ directory and a symlink."""
    if shutil.which("git") is None:
        if os.environ.get("CI"):
            pytest.fail("git is missing: make install installs it (engine/host/packages.py)")
        pytest.skip("needs the git CLI")
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    (path / "web").mkdir()
    (path / "web" / "Dockerfile").write_text("FROM busybox\n")
    (path / "version").write_text("one\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "one")
    git(path, "tag", "v1")
    (path / "version").write_text("two\n")
    (path / "escape").symlink_to("/etc")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "two")
    return path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/srv/git/app.git", GitContext(Path("/srv/git/app.git"))),
        ("file:///srv/git/app.git#v1.2", GitContext(Path("/srv/git/app.git"), "v1.2")),
        ("/srv/git/app#main:web", GitContext(Path("/srv/git/app"), "main", "web")),
        ("/srv/git/app#:web/", GitContext(Path("/srv/git/app"), "", "web")),
        ("/srv/git/app#feature/x:./a/../b", GitContext(Path("/srv/git/app"), "feature/x", "b")),
        ("file://localhost/srv/my%20app", GitContext(Path("/srv/my app"))),
    ],
)
def test_git_urls_name_a_path_a_ref_and_a_directory(url: str, expected: GitContext) -> None:
    assert parse_git_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.invalid/app.git", "remote repositories are not supported"),
        ("git@example.invalid:app.git", "remote repositories are not supported"),
        ("ssh://example.invalid/app", "remote repositories are not supported"),
        ("file://elsewhere/srv/app", "only file:// URLs of this machine"),
        ("srv/app", "give an absolute path"),
        ("/srv/app#-upload-pack=evil", "is not a branch or tag name"),
        ("/srv/app#a..b", "is not a branch or tag name"),
        ("/srv/app#main:../..", "leads out of the repository"),
    ],
)
def test_bad_git_urls_are_refused_with_what_to_write(url: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_git_url(url)


def test_a_clone_holds_the_tree_of_one_commit_without_git_metadata(repo: Path, tmp_path: Path) -> None:
    head = clone_context(parse_git_url(str(repo)), tmp_path / "head")
    assert head == tmp_path / "head"
    assert (head / "version").read_text() == "two\n"
    assert os.readlink(head / "escape") == "/etc"  # kept as a link; COPY resolves it inside the context
    assert not (head / ".git").exists()
    tagged = clone_context(parse_git_url(f"{repo.as_uri()}#v1"), tmp_path / "tagged")
    assert (tagged / "version").read_text() == "one\n"
    subdir = clone_context(parse_git_url(f"{repo}#main:web"), tmp_path / "sub")
    assert subdir == tmp_path / "sub" / "web" and [p.name for p in subdir.iterdir()] == ["Dockerfile"]


@pytest.mark.parametrize(
    ("fragment", "message"),
    [("#nope", "couldn't find remote ref nope"), ("#main:missing", "no directory 'missing'")],
)
def test_a_failed_clone_says_why_and_leaves_nothing(
    repo: Path, tmp_path: Path, fragment: str, message: str
) -> None:
    dest = tmp_path / "clone"
    with pytest.raises(InvalidSpec, match=message):
        clone_context(parse_git_url(f"{repo}{fragment}"), dest)
    assert not dest.exists()


def test_a_path_that_is_no_repository_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidSpec, match="check that the path is a git repository"):
        clone_context(parse_git_url(str(tmp_path / "plain")), tmp_path / "clone")
    assert not (tmp_path / "clone").exists()


def test_the_clone_is_shallow(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only one commit is fetched: the repository's history never reaches the build host's disk."""
    from engine.build import git as git_module

    kept: list[int] = []
    real_remove = git_module.remove_tree

    def count_then_remove(path: Path) -> None:
        if path.name == ".git":
            kept.append(int(git(path.parent, "rev-list", "--count", "HEAD").strip()))
        real_remove(path)

    monkeypatch.setattr(git_module, "remove_tree", count_then_remove)
    clone_context(parse_git_url(str(repo)), tmp_path / "clone")
    assert kept == [1]
    assert int(git(repo, "rev-list", "--count", "HEAD").strip()) == 2


def test_a_repository_that_points_git_elsewhere_is_refused_before_git_runs(
    repo: Path, tmp_path: Path
) -> None:
    """A tenant's repository must not make the host's git read another repository or host files."""
    other = tmp_path / "other"
    other.mkdir()
    redirect = tmp_path / "redirect"
    redirect.mkdir()
    (redirect / ".git").write_text(f"gitdir: {repo / '.git'}\n")
    with pytest.raises(InvalidSpec, match=r"\.git is not a directory"):
        clone_context(parse_git_url(str(redirect)), tmp_path / "c1")
    (repo / ".git" / "objects" / "info" / "alternates").write_text(f"{other}\n")
    with pytest.raises(InvalidSpec, match="uses objects/info/alternates"):
        clone_context(parse_git_url(str(repo)), tmp_path / "c2")
    os.unlink(repo / ".git" / "objects" / "info" / "alternates")
    (repo / ".git" / "refs" / "heads" / "stolen").symlink_to("/etc/shadow")
    with pytest.raises(InvalidSpec, match=r"'.git/refs/heads/stolen' is a symbolic link"):
        clone_context(parse_git_url(str(repo)), tmp_path / "c3")
    os.unlink(repo / ".git" / "refs" / "heads" / "stolen")
    os.mkfifo(repo / ".git" / "packed-refs")
    with pytest.raises(InvalidSpec, match=r"'.git/packed-refs' is a FIFO"):
        clone_context(parse_git_url(str(repo)), tmp_path / "c4")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("c")]


def test_a_subdirectory_that_is_a_link_out_of_the_checkout_is_refused(repo: Path, tmp_path: Path) -> None:
    git(repo, "mv", "web", "real-web")
    (repo / "web").symlink_to("../../..")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "web is a link out")
    with pytest.raises(InvalidSpec, match="'web' leads out of the checkout"):
        clone_context(parse_git_url(f"{repo}#main:web"), tmp_path / "clone")
    assert not (tmp_path / "clone").exists()
    (repo / "web").unlink()
    (repo / "web").symlink_to("real-web")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "web is a link inside")
    assert clone_context(parse_git_url(f"{repo}#main:web"), tmp_path / "ok") == tmp_path / "ok" / "real-web"
