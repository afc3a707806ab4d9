"""Source trees for COPY and ADD: the build context (with .dockerignore) or another stage's files.

A COPY source is resolved inside its tree and may use wildcards. Every read goes
through :mod:`engine.build.beneath`: in the build context (``beneath=True``) a
path or symlink leading out is refused, in a stage's root file system an absolute
link means that stage's root. A named source that is a symlink is followed (inside
the tree); symlinks below a copied directory are copied as links, like Docker.
FIFOs, devices and sockets in the context are refused, naming their path; the
files a build reads from the context add up to at most ``limit`` bytes.
:meth:`SourceTree.resolve` lists what a COPY reads, :func:`content_hash`
fingerprints it for the layer cache, :meth:`Entry.open` re-opens a file for reading.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.build import beneath
from engine.build.ignore import IgnoreRules
from engine.errors import InvalidSpec
from engine.images.digest import Readable

_WILDCARDS = "*?["
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One thing a COPY reads: ``rel`` is its path below the copied source ('' for the source itself)."""

    rel: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    link_target: str = ""
    opener: Callable[[], int] = field(default=lambda: -1, compare=False, repr=False)

    def open(self) -> int:
        """A read-only fd of this regular file, re-opened inside its tree (InvalidSpec if it is
        no longer a regular file inside the tree, or grew over the tree's size limit)."""
        return self.opener()

    def chunks(self) -> Iterator[bytes]:
        """This regular file's content, re-opened inside its tree, at most the ``size`` it had when
        planned (a file growing meanwhile is cut there: what is hashed is what is copied)."""
        fd = self.open()
        try:
            remaining = self.size
            while remaining > 0 and (chunk := os.read(fd, min(_CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


@dataclass(frozen=True)
class Source:
    """A resolved COPY source: its name as matched and every entry below it (itself first)."""

    name: str
    entries: tuple[Entry, ...]

    @property
    def is_dir(self) -> bool:
        return self.entries[0].is_dir


class SourceTree:
    """A directory COPY reads from: the build context (``beneath``) or a stage's root file system."""

    def __init__(
        self,
        root: Path,
        rules: IgnoreRules | None = None,
        *,
        what: str = "the build context",
        beneath: bool = False,
        limit: int | None = None,
    ) -> None:
        self.root = root
        self.rules = rules or IgnoreRules([])
        self.what = what
        self.in_root = not beneath
        self.limit = limit
        self._sizes: dict[str, int] = {}  # every file planned so far, for the total size bound
        self._total = 0

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` is excluded by .dockerignore."""
        return bool(rel) and self.rules.excluded(rel)

    def resolve(self, patterns: list[str], instruction: str) -> list[Source]:
        """The sources ``patterns`` name (wildcards allowed); InvalidSpec if none match or one is refused."""
        sources: list[Source] = []
        with self._root() as root_fd:
            for pattern in patterns:
                rel = self._clean(pattern, instruction)
                names = self._glob(root_fd, rel) if any(c in rel for c in _WILDCARDS) else [rel]
                names = [n for n in names if not self._hidden(root_fd, n)]
                if not names:
                    raise InvalidSpec(
                        f"{instruction}: {pattern!r} matches no file in {self.what}"
                        + (" (it is excluded by .dockerignore)" if self.excluded(rel) else "")
                    )
                for name in names:
                    sources.append(self._source(root_fd, name, pattern, instruction))
        return sources

    @contextlib.contextmanager
    def _root(self) -> Iterator[int]:
        fd = beneath.open_root(self.root)
        try:
            yield fd
        finally:
            os.close(fd)

    def _clean(self, pattern: str, instruction: str) -> str:
        cleaned = posixpath.normpath("/" + pattern.replace("\\", "/") if pattern.startswith("/") else pattern)
        cleaned = cleaned.lstrip("/")
        if cleaned == ".." or cleaned.startswith("../"):
            raise InvalidSpec(
                f"{instruction}: {pattern!r} is outside {self.what}; "
                "copy only files below the context directory"
            )
        return "" if cleaned == "." else cleaned

    def _glob(self, root_fd: int, rel: str) -> list[str]:
        found = [""]
        for part in rel.split("/"):
            nxt: list[str] = []
            for base in found:
                try:
                    fd = beneath.open_dir(root_fd, base, what=self.what, in_root=self.in_root)
                except InvalidSpec:
                    continue
                try:
                    children = sorted(os.listdir(fd))
                finally:
                    os.close(fd)
                nxt += [
                    posixpath.join(base, c) if base else c for c in children if fnmatch.fnmatchcase(c, part)
                ]
            found = nxt
        return found

    def _hidden(self, root_fd: int, rel: str) -> bool:
        """Excluded, unless something below it is re-included by a ``!`` pattern."""
        if not self.excluded(rel):
            return False
        if not self.rules.has_exceptions:
            return True
        try:
            fd = beneath.open_dir(root_fd, rel, what=self.what, in_root=self.in_root)
        except InvalidSpec:
            return True
        try:
            return not any(True for _ in self._walk(fd, rel, rel))
        finally:
            os.close(fd)

    def _source(self, root_fd: int, rel: str, pattern: str, instruction: str) -> Source:
        try:
            path_fd = beneath.open_path(root_fd, rel, in_root=self.in_root)  # a named link is followed
        except OSError as exc:
            error = beneath.explain(exc, pattern, self.what)
            raise InvalidSpec(f"{instruction}: {error.message}") from None
        try:
            st = os.fstat(path_fd)
            if not self.in_root or not stat.S_ISREG(st.st_mode):
                try:
                    beneath.refuse_special(st.st_mode, rel or ".", self.what)
                except InvalidSpec as exc:
                    raise InvalidSpec(f"{instruction}: {exc.message}") from None
            top = self._entry("", rel, st)
            if not stat.S_ISDIR(st.st_mode):
                return Source(rel, (top,))
            dir_fd = beneath.reopen(path_fd, os.O_RDONLY | os.O_DIRECTORY)
        finally:
            os.close(path_fd)
        try:
            return Source(rel, (top, *self._walk(dir_fd, rel, rel)))
        finally:
            os.close(dir_fd)

    def _walk(self, dir_fd: int, rel_dir: str, path_dir: str, below: str = "") -> Iterator[Entry]:
        for name in sorted(os.listdir(dir_fd)):
            ctx_rel = posixpath.join(rel_dir, name) if rel_dir else name
            path = posixpath.join(path_dir, name) if path_dir else name
            sub_rel = posixpath.join(below, name) if below else name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub_fd = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
                )
                try:
                    inner = list(self._walk(sub_fd, ctx_rel, path, sub_rel))
                finally:
                    os.close(sub_fd)
                if not self.excluded(ctx_rel) or inner:
                    yield self._entry(sub_rel, path, st)
                    yield from inner
                continue
            if self.excluded(ctx_rel):
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                if self.in_root:
                    continue  # an image's FIFO is left out, as before
                beneath.refuse_special(st.st_mode, ctx_rel, self.what)
            link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
            yield self._entry(sub_rel, path, st, link)

    def _entry(self, rel: str, path: str, st: os.stat_result, link: str = "") -> Entry:
        if stat.S_ISREG(st.st_mode):
            self._count(path, st.st_size)

        def opener() -> int:
            with self._root() as root_fd:
                return beneath.open_file(
                    root_fd, path, what=self.what, limit=self.limit, follow=not rel, in_root=self.in_root
                )

        return Entry(rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime, link, opener)

    def _count(self, path: str, size: int) -> None:
        if self.limit is None:
            return
        self._total += size - self._sizes.get(path, 0)
        self._sizes[path] = size
        if self._total > self.limit:
            raise InvalidSpec(
                f"the files this build reads from {self.what} add up to {self._total} bytes, over the limit "
                f"of {self.limit} bytes; make the context smaller or exclude files in .dockerignore"
            )


class Bounded:
    """A stream that refuses (InvalidSpec, naming ``what`` and the setting) to give more than ``limit``
    bytes: an unpacked context tar or an ADD archive, stopped before the disk fills."""

    def __init__(self, stream: Readable, limit: int, what: str) -> None:
        self.stream, self.limit, self.what, self.total = stream, limit, what, 0

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; InvalidSpec once more than ``limit`` were read in all."""
        data = self.stream.read(size)
        self.total += len(data)
        if self.total > self.limit:
            raise InvalidSpec(f"{self.what} unpacks to more than {self.limit} bytes; make it smaller")
        return data


def content_hash(sources: list[Source]) -> str:
    """A sha256 over every entry's path, type, mode, owner, size, link target and file content."""
    h = hashlib.sha256()
    for source in sources:
        h.update(f"source {source.name}\n".encode())
        for e in source.entries:
            h.update(f"{e.rel}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.size}\0{e.link_target}\n".encode())
            if e.is_file:
                for chunk in e.chunks():
                    h.update(chunk)
    return h.hexdigest()
