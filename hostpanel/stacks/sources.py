"""Where a stack's compose file comes from: pasted text, an upload (a compose file, or a tar of the
project directory), or a git repository under the tenant's build-context root (builds' rule)."""

from __future__ import annotations

import io
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from django.conf import settings

from engine.build.git import clone_context, parse_git_url
from engine.build.upload import unpack_archive
from engine.errors import EngineError
from hostpanel.builds.contexts import check_git_url
from hostpanel.errors import InvalidRequest
from hostpanel.stacks.models import Stack
from hostpanel.tenants.models import Tenant

MAX_SOURCE_BYTES = 256 * 1024
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
MAX_ARCHIVE_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class Source:
    """A compose file and where it came from; ``base_dir`` (upload of a project, git) is where
    env_file and build contexts are read (a pasted file has none: it may use neither)."""

    text: str
    kind: str = Stack.Source.PASTE
    base_dir: Path | None = None
    git_url: str = ""
    git_file: str = ""

    @property
    def project_dir(self) -> str:
        """The directory the panel keeps for this source (an unpacked upload, a git checkout; '' for none)."""
        return str(self.base_dir) if self.base_dir is not None else ""


def stored(stack: Stack) -> Source:
    """The stack's source as last deployed (a git stack's is read again from its repository)."""
    if stack.source_kind == Stack.Source.GIT:
        return from_git(stack.tenant, stack.git_url, stack.git_file)
    base = Path(stack.project_dir) if stack.project_dir else None
    return Source(text=stack.source, kind=stack.source_kind, base_dir=base)


def pasted(text: str) -> Source:
    return Source(text=text, kind=Stack.Source.PASTE)


def _project_dirs(tenant: Tenant) -> Path:
    return Path(settings.VAR_DIR) / "stacks" / tenant.slug


def forget_project_dir(tenant: Tenant, path: str) -> None:
    """Remove a project directory the panel unpacked or checked out (the whole one it is in, for a
    git DIR), and only ever one under the tenant's own stacks directory."""
    if not path:
        return
    root = _project_dirs(tenant).resolve()
    resolved = Path(path).resolve()
    if resolved != root and resolved.is_relative_to(root):
        shutil.rmtree(root / resolved.relative_to(root).parts[0], ignore_errors=True)


def _compose_file_in(directory: Path, name: str = "") -> str:
    candidates = (name,) if name else COMPOSE_FILES
    for candidate in candidates:
        path = (directory / candidate).resolve()
        if path.is_relative_to(directory.resolve()) and path.is_file():
            if path.stat().st_size > MAX_SOURCE_BYTES:
                raise InvalidRequest(f"compose: {candidate} is larger than {MAX_SOURCE_BYTES} bytes")
            return path.read_text(encoding="utf-8", errors="strict")
    raise InvalidRequest(f"compose: no {' or '.join(candidates)} at the top of the project")


def _unpack(tenant: Tenant, archive: BinaryIO) -> Path:
    """A project tar unpacked under the panel's stacks directory by the engine's safe unpacker, as
    build contexts are (engine.build.upload: no member lands outside it, links are never followed
    while writing, devices skipped, bounded); InvalidRequest for anything else. Links it holds are
    read only inside the project (``_compose_file_in``, the compose loader's env_file checks)."""
    target = _project_dirs(tenant) / secrets.token_hex(8)
    target.mkdir(parents=True)
    try:
        unpack_archive(archive, target, limit=MAX_ARCHIVE_BYTES, what="file: the project")
    except (EngineError, OSError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise InvalidRequest(f"file: not a project archive we can unpack: {exc}") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def uploaded(tenant: Tenant, upload: IO[bytes]) -> Source:
    """An uploaded compose file, or a tar (gzip allowed) of the project with its compose file at
    the top (then env_file and build contexts are read from it)."""
    data = upload.read(MAX_ARCHIVE_BYTES + 1)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise InvalidRequest(f"file: larger than {MAX_ARCHIVE_BYTES} bytes")
    try:
        is_tar = tarfile.is_tarfile(io.BytesIO(data))
    except OSError:
        is_tar = False
    if not is_tar:
        try:
            return Source(text=data.decode("utf-8"), kind=Stack.Source.UPLOAD)
        except UnicodeDecodeError:
            raise InvalidRequest("file: give a compose file (UTF-8 YAML) or a tar of the project") from None
    directory = _unpack(tenant, io.BytesIO(data))
    try:
        text = _compose_file_in(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Source(text=text, kind=Stack.Source.UPLOAD, base_dir=directory)


def from_git(tenant: Tenant, url: str, file: str = "") -> Source:
    """The compose file ``file`` (default: compose.yaml and its usual names) of ``PATH[#REF][:DIR]``,
    a repository under the tenant's own build-context root (the builds' rule). That one commit is
    cloned (the builds' hardened clone: no alternates or links out of the repository, no .git kept)
    into a directory of the panel's own, where env_file and build contexts are then read."""
    url = check_git_url(url, tenant)
    if file and (file.startswith("/") or ".." in Path(file).parts):
        raise InvalidRequest("git.file: give a path inside the repository, e.g. deploy/compose.yaml")
    parent = _project_dirs(tenant)
    parent.mkdir(parents=True, exist_ok=True)
    checkout = parent / secrets.token_hex(8)
    try:
        base = clone_context(parse_git_url(url), checkout)
    except EngineError as exc:
        raise InvalidRequest(f"git.url: {exc}") from None
    try:
        text = _compose_file_in(base, file)
    except BaseException:
        shutil.rmtree(checkout, ignore_errors=True)
        raise
    return Source(text=text, kind=Stack.Source.GIT, base_dir=base, git_url=url, git_file=file)


def context_tar(directory: Path) -> IO[bytes]:
    """A build context directory as an in-memory tar (what builds take as an upload)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    buffer.seek(0)
    return buffer
