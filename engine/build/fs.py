"""Scratch overlays for COPY/ADD steps and for reading another stage's files, and the copy itself.

A :class:`Workspace` mounts the layers of a stage (unpacked for the tenant's
uid range) under a fresh upper directory in the engine's tmp; whatever is
written to ``rootfs`` lands in ``upper``, which :mod:`engine.build.diff`
turns into a layer. It unmounts and removes everything on exit.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from pathlib import Path
from types import TracebackType

from engine.build.context import Entry, Source
from engine.errors import InvalidSpec
from engine.images.blobs import TMP_PREFIX
from engine.images.extract import remove_tree
from engine.runtime import mounts
from engine.runtime.rootpath import resolve_in_root

_SETID = stat.S_ISUID | stat.S_ISGID


class Workspace:
    """An overlay of ``lowers`` (bottom first) with a private upper dir, mounted at ``rootfs``."""

    def __init__(self, tmp: Path, lowers_bottom_first: list[Path], uid_base: int) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(dir=tmp, prefix=TMP_PREFIX + "build-"))
        self.upper, self.work, self.rootfs = self.dir / "upper", self.dir / "work", self.dir / "rootfs"
        self._lowers = list(reversed(lowers_bottom_first))
        self._uid_base = uid_base
        self._mounted = False

    def __enter__(self) -> Workspace:
        try:
            for d in (self.upper, self.work, self.rootfs):
                d.mkdir()
            os.chown(self.upper, self._uid_base, self._uid_base)
            lowers = self._lowers
            if not lowers:  # FROM scratch: an empty lower layer
                empty = self.dir / "empty"
                empty.mkdir()
                os.chown(empty, self._uid_base, self._uid_base)
                lowers = [empty]
            mounts.mount_overlay(lowers, self.upper, self.work, self.rootfs)
            self._mounted = True
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unmount and delete the workspace (idempotent)."""
        if self._mounted:
            mounts.unmount(self.rootfs)
            self._mounted = False
        remove_tree(self.dir)


def _ensure_dir(rootfs: Path, path: str, owner: tuple[int, int]) -> Path:
    """The host path of directory ``path`` in ``rootfs``, creating missing ones (0755, ``owner``)."""
    target = resolve_in_root(rootfs, path)
    if target.is_dir():
        return target
    if target.exists() or target.is_symlink():
        raise InvalidSpec(f"{path!r} exists in the image but is not a directory")
    parent = _ensure_dir(rootfs, posixpath.dirname(path.rstrip("/")) or "/", owner)
    created = parent / posixpath.basename(path.rstrip("/"))
    created.mkdir(mode=0o755)
    os.chown(created, *owner)
    return created


def _clear(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def _copy_entry(entry: Entry, target: Path, owner: tuple[int, int], chmod: int | None) -> None:
    mode = chmod if chmod is not None else stat.S_IMODE(entry.mode) & ~_SETID
    if entry.is_dir:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            _clear(target)
        if not target.exists():
            target.mkdir(mode=0o700)
        os.chown(target, *owner)
        os.chmod(target, mode)
        return
    if target.exists() or target.is_symlink():
        _clear(target)
    if entry.is_symlink:
        os.symlink(entry.link_target, target)
        os.chown(target, *owner, follow_symlinks=False)
        return
    dst_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        for chunk in entry.chunks():
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst_fd, view) :]
        os.fchown(dst_fd, *owner)
        os.fchmod(dst_fd, mode)
        os.utime(dst_fd, (entry.mtime, entry.mtime))
    finally:
        os.close(dst_fd)


def copy_sources(
    rootfs: Path,
    sources: list[Source],
    dest: str,
    *,
    owner: tuple[int, int],
    root_owner: tuple[int, int],
    chmod: int | None = None,
    force_dir: bool = False,
) -> None:
    """Copy ``sources`` to the image path ``dest`` (absolute) inside ``rootfs``, like COPY.

    A directory source has its content copied; a destination ending in ``/``,
    several sources or ``force_dir`` (a wildcard) make ``dest`` a directory.
    New parent directories are made 0755 with ``root_owner``; copied entries
    get ``owner`` (host ids) and ``chmod`` when given. Raises InvalidSpec when
    ``dest`` cannot be a directory.
    """
    into_dir = force_dir or dest.endswith("/") or len(sources) > 1 or resolve_in_root(rootfs, dest).is_dir()
    for source in sources:
        if source.is_dir:
            base = dest
            _ensure_dir(rootfs, base, root_owner)
        elif into_dir:
            base = posixpath.join(dest, posixpath.basename(source.name))
            _ensure_dir(rootfs, dest, root_owner)
        else:
            base = dest
            _ensure_dir(rootfs, posixpath.dirname(dest) or "/", root_owner)
        for entry in source.entries:
            if source.is_dir and not entry.rel:
                continue
            path = posixpath.join(base, entry.rel) if entry.rel else base
            parent = resolve_in_root(rootfs, posixpath.dirname(path) or "/")
            if not parent.is_dir():
                raise InvalidSpec(f"cannot copy to {path!r}: its parent is not a directory in the image")
            _copy_entry(entry, parent / posixpath.basename(path), owner, chmod)
