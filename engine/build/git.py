"""Build contexts from a git repository on this machine: ``PATH[#REF][:SUBDIR]`` like Docker's.

``/srv/git/app.git``, ``file:///srv/git/app.git#v1.2``, ``/srv/git/app#main:web`` and
``/srv/git/app#:web`` name a repository by its local path (or ``file://`` URL), a
branch or tag (default: the repository's HEAD) and a directory inside it (default:
its top). :func:`clone_context` fetches only that one commit (depth 1) with the git
CLI into a fresh directory and drops ``.git``, so the context holds the tree alone.
Remote URLs are refused: hosts need not reach the internet, and the caller decides
which local paths are allowed. A repository whose git directory could make git read
elsewhere (a ``.git`` file or link, ``commondir``, object alternates, symlinks or special
files inside it) is refused before git touches it (:func:`check_repository`); the
checkout is then read like any context, never leaving it (:mod:`engine.build.beneath`).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from engine.build import beneath
from engine.errors import HostNotReady, InvalidSpec
from engine.images.extract import remove_tree

_REF_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}$")
_REMOTE_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|[^/]*@[^/]*:)")
_GIT_TIMEOUT = 600.0
_MESSAGE_TAIL = 2000
_REDIRECTS = ("commondir", "gitdir", "objects/info/alternates", "objects/info/http-alternates")


@dataclass(frozen=True)
class GitContext:
    """A parsed ``git_url``: the repository's absolute path, a ref ('' = HEAD) and a subdirectory."""

    repository: Path
    ref: str = ""
    subdir: str = ""


def parse_git_url(url: str) -> GitContext:
    """Parse ``PATH[#REF][:SUBDIR]`` (PATH absolute or ``file://``). Raises InvalidSpec saying what
    is wrong: a remote URL, a relative path, a malformed ref, a subdirectory leading out of the tree."""
    text = url.strip()
    location, _, fragment = text.partition("#")
    if location.startswith("file://"):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise InvalidSpec(f"git URL {url!r}: only file:// URLs of this machine are allowed (no host)")
        location = unquote(parts.path)
    elif _REMOTE_RE.match(location):
        raise InvalidSpec(
            f"git URL {url!r}: remote repositories are not supported (hosts may have no internet); "
            "give the path of a repository on this machine, e.g. /srv/git/app.git#main"
        )
    if not location.startswith("/"):
        raise InvalidSpec(f"git URL {url!r}: give an absolute path or a file:// URL of the repository")
    ref, _, subdir = fragment.partition(":")
    if ref and (not _REF_RE.match(ref) or ".." in ref or ref.endswith((".lock", "/", "."))):
        raise InvalidSpec(
            f"git URL {url!r}: {ref!r} is not a branch or tag name; write PATH#BRANCH or PATH#BRANCH:DIR"
        )
    clean_subdir = posixpath.normpath(subdir).lstrip("/") if subdir else ""
    if clean_subdir in (".", ""):
        clean_subdir = ""
    elif clean_subdir == ".." or clean_subdir.startswith("../"):
        raise InvalidSpec(f"git URL {url!r}: the directory {subdir!r} leads out of the repository")
    return GitContext(Path(location), ref, clean_subdir)


def check_repository(repository: Path) -> None:
    """Refuse a repository whose git directory could lead git to read outside it: ``.git`` as a
    file or link (``gitdir:``), ``commondir``, object alternates, or a symlink, FIFO, device or
    socket anywhere in the git directory. A path that is no repository is left to git to refuse."""
    dot_git = repository / ".git"
    if os.path.lexists(dot_git) and not stat.S_ISDIR(os.lstat(dot_git).st_mode):
        raise InvalidSpec(
            f"git repository {repository}: .git is not a directory (a gitdir file or link); "
            "give the path of the repository itself"
        )
    git_dir = dot_git if os.path.lexists(dot_git) else repository
    if not (git_dir / "HEAD").exists() or not (git_dir / "objects").is_dir():
        return
    for name in _REDIRECTS:
        if os.path.lexists(git_dir / name):
            raise InvalidSpec(
                f"git repository {repository}: it uses {name}, which points git at other repositories; "
                "give a self-contained repository (git repack -a -d; rm .git/objects/info/alternates)"
            )
    for top, dirs, files in os.walk(git_dir):
        for name in dirs + files:
            mode = os.lstat(os.path.join(top, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                rel = os.path.relpath(os.path.join(top, name), repository)
                raise InvalidSpec(
                    f"git repository {repository}: {rel!r} is {beneath.kind_name(mode)}; a repository's "
                    "git directory may hold only regular files and directories"
                )


def clone_context(source: GitContext, dest: Path) -> Path:
    """Fetch ``source``'s commit (depth 1) into the new directory ``dest`` and return the context
    directory (``dest`` or its subdirectory). ``.git`` is removed; on failure ``dest`` is removed.
    Raises HostNotReady without the git CLI, InvalidSpec for an unknown repository, ref or directory."""
    git = shutil.which("git")
    if git is None:
        raise HostNotReady("the git CLI is missing on this host; install it with: apt-get install git")
    check_repository(source.repository)
    dest.mkdir(mode=0o755)
    try:
        url = source.repository.resolve().as_uri()  # file:// so that --depth applies
        _git(git, ["init", "--quiet", str(dest)], dest.parent, source)
        _git(git, ["fetch", "--quiet", "--depth", "1", "--no-tags", url, source.ref or "HEAD"], dest, source)
        _git(git, ["checkout", "--quiet", "--detach", "FETCH_HEAD"], dest, source)
        remove_tree(dest / ".git")
        if not source.subdir:
            return dest
        root = beneath.open_root(dest)
        try:
            os.close(beneath.open_dir(root, source.subdir, what=f"the checkout of {source.repository}"))
        except beneath.Missing:
            raise InvalidSpec(
                f"git repository {source.repository}: no directory {source.subdir!r} at "
                f"{source.ref or 'HEAD'}; write PATH#REF:DIR with a directory of the repository"
            ) from None
        finally:
            os.close(root)
        return Path(os.path.realpath(dest / source.subdir))  # checked: it stays inside the checkout
    except BaseException:
        remove_tree(dest)
        raise


def _git(git: str, args: list[str], cwd: Path, source: GitContext) -> None:
    """Run one git command with no user or system configuration, no prompts and no hooks."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PROTOCOL_FROM_USER": "0",
        "LC_ALL": "C",
    }
    command = [git, "-c", "protocol.allow=never", "-c", "protocol.file.allow=always", *args]
    try:
        proc = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=_GIT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise InvalidSpec(f"git {args[0]} of {source.repository} took over {_GIT_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-_MESSAGE_TAIL:]
        raise InvalidSpec(
            f"git {args[0]} of {source.repository} at {source.ref or 'HEAD'} failed: {detail}; "
            "check that the path is a git repository and the branch or tag exists"
        )
