"""Copy files out of and into a container as tar streams (`docker cp`, `hpctl cp`).

The container's file system is the tenant's: any link in it may point anywhere. Every path is
resolved with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` from an fd of the container's
root (:mod:`engine.build.beneath`), so an absolute link or ``..`` ends at the container's own
root, never the host's. Reading walks directory fds with ``O_NOFOLLOW``
(:class:`engine.volumes.archive.TreeExporter`); writing is the engine's hostile-archive extractor
(:func:`engine.images.extract.extract_layer` into the opened directory): no member escapes
through ``..``, an absolute name or a link, device nodes are refused, hard links only to members
of the same archive, and files are owned by the container's mapped ids (container root unless
the caller keeps the archive's owners), never by host ids.

The root is the container's overlay as mounted on the host (``<bundle>/rootfs``, mounted from
create to remove, so stopped containers work too). Volumes and tmpfs mounted inside the container
are not part of it: a copy sees the image's and the container's own files only.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

from engine.build import beneath
from engine.errors import Conflict, InvalidSpec, NotFound, RuntimeFailure
from engine.images.digest import Readable
from engine.images.extract import CopyTarget, extract_layer
from engine.runtime import mounts
from engine.runtime.containers import ContainerManager
from engine.runtime.model import Container
from engine.runtime.rootpath import resolve_in_root
from engine.volumes.archive import TreeExporter

MAX_PATH = 4096


class Writable(Protocol):
    """Anything with a ``write(data)`` (a file, a socket's file, a queue writer)."""

    def write(self, data: bytes, /) -> int:
        """Write ``data``; returns how many bytes were taken."""
        ...


class ContainerPathNotFound(NotFound):
    """The path does not exist in the container."""


@dataclass(frozen=True)
class PathStat:
    """What `docker cp` learns about a path first: its base name, size, mode, mtime, link target.

    ``mode`` is the Unix ``st_mode``; ``link_target`` is, for a symbolic link, the absolute path
    inside the container it resolves to ('' otherwise).
    """

    name: str
    size: int
    mode: int
    mtime: float
    link_target: str = ""


def _check_path(path: str) -> str:
    if not path or "\0" in path or len(path) > MAX_PATH:
        raise InvalidSpec(f"invalid container path {path[:100]!r}: give an absolute path like /etc/hosts")
    return path if path.startswith("/") else "/" + path


def _root_of(containers: ContainerManager, ref: str | Container) -> tuple[Container, Path]:
    container = containers.get(ref)
    root = containers.store.directory(container.id) / "rootfs"
    if not mounts.is_mountpoint(root):
        raise Conflict(f"the file system of container {container.name} is not mounted; start it once")
    return container, root


def _what(container: Container) -> str:
    return f"container {container.name}"


def _split(path: str) -> tuple[str, str, bool]:
    """(parent, base, follow the last component): a trailing '/' or '/.' asks to follow it."""
    follow = path.endswith("/") or path.endswith("/.")
    trimmed = path.rstrip("/")
    if trimmed.endswith("/."):
        trimmed = trimmed[:-2]
    parent, base = posixpath.split(trimmed or "/")
    return parent or "/", base, follow


def _open(root_fd: int, rel: str, container: Container, *, follow: bool, shown: str = "") -> int:
    """An O_PATH fd of ``rel`` inside the container's root (ContainerPathNotFound when missing)."""
    try:
        return beneath.open_path(root_fd, rel.lstrip("/") or ".", follow=follow, in_root=True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ContainerPathNotFound(
                f"Could not find the file {shown or rel} in {_what(container)}"
            ) from None
        raise beneath.explain(exc, shown or rel, _what(container)) from None


def stat_path(containers: ContainerManager, ref: str | Container, path: str) -> PathStat:
    """Stat ``path`` inside container ``ref`` without following a last symbolic link (unless the
    path ends in '/' or '/.'). Raises ContainerNotFound, ContainerPathNotFound, InvalidSpec."""
    container, root = _root_of(containers, ref)
    path = _check_path(path)
    parent, base, follow = _split(path)
    root_fd = beneath.open_root(root)
    try:
        rel = path if follow or not base else posixpath.join(parent, base)
        fd = _open(root_fd, rel, container, follow=follow, shown=path)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)
    target = ""
    if stat.S_ISLNK(st.st_mode):
        resolved = resolve_in_root(root, path)
        target = "/" + str(resolved.relative_to(root)).lstrip(".")
    return PathStat(name=base or "/", size=st.st_size, mode=st.st_mode, mtime=st.st_mtime, link_target=target)


def export_path(
    containers: ContainerManager, ref: str | Container, path: str, out: Writable, *, name: str | None = None
) -> PathStat:
    """Write ``path`` of container ``ref`` to ``out`` as a tar stream, the way `docker cp` reads it.

    The archive's top member is named after the path's base name ('.' for a path ending in
    '/.', which copies a directory's content) unless ``name`` is given; a last component that
    is a symbolic link is archived as the link itself. Owners are container ids. Raises ContainerNotFound,
    ContainerPathNotFound, InvalidSpec; OSError for I/O errors.
    """
    container, root = _root_of(containers, ref)
    path = _check_path(path)
    info = stat_path(containers, container, path)
    parent, base, follow = _split(path)
    name = name or ("." if path.rstrip("/").endswith("/.") or not base else base)
    root_fd = beneath.open_root(root)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            exporter = TreeExporter(tar, container.uid_base)
            if follow or not base:
                dir_fd = beneath.open_dir(
                    root_fd, path.lstrip("/") or ".", what=_what(container), in_root=True
                )
                try:
                    exporter.add_dir(dir_fd, name)
                finally:
                    os.close(dir_fd)
            else:
                parent_fd = _open(root_fd, parent, container, follow=True, shown=path)
                try:
                    exporter.add_entry(parent_fd, base, name)
                finally:
                    os.close(parent_fd)
    finally:
        os.close(root_fd)
    return info


def import_archive(
    containers: ContainerManager,
    ref: str | Container,
    path: str,
    stream: Readable | IO[bytes],
    *,
    keep_owners: bool = False,
    no_overwrite_dir_non_dir: bool = False,
) -> int:
    """Extract the tar ``stream`` into the existing directory ``path`` of container ``ref``.

    Members are owned by the container's root (``keep_owners``: by the archive's ids, mapped
    into the container's range). Returns the number of members written. Raises
    ContainerNotFound, ContainerPathNotFound, InvalidSpec (``path`` is not a directory),
    UnsafeArchive/InvalidArchive for a hostile or broken archive, Conflict for a kind change
    refused by ``no_overwrite_dir_non_dir``. What was extracted before an error stays.
    """
    container, root = _root_of(containers, ref)
    path = _check_path(path)
    root_fd = beneath.open_root(root)
    try:
        path_fd = _open(root_fd, path, container, follow=True)
        try:
            if not stat.S_ISDIR(os.fstat(path_fd).st_mode):
                raise InvalidSpec(f"{path} in {_what(container)} is not a directory; copy into a directory")
            dir_fd = beneath.reopen(path_fd, os.O_RDONLY | os.O_DIRECTORY)
        finally:
            os.close(path_fd)
    finally:
        os.close(root_fd)
    try:
        stats = extract_layer(
            stream,
            root / path.lstrip("/"),
            uid_base=container.uid_base,
            whiteouts=False,
            into=CopyTarget(
                dir_fd,
                owner=None if keep_owners else (0, 0),
                no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
            ),
        )
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RuntimeFailure(f"no space left for the copy into {_what(container)}") from None
        raise
    finally:
        os.close(dir_fd)
    return stats.files + stats.dirs + stats.symlinks + stats.hardlinks + stats.fifos
