"""Source trees for COPY and ADD: the build context (with .dockerignore) or another stage's files.

A COPY source is resolved inside its tree (symlinks never lead out of it),
may use wildcards, and is refused with a clear error when it lies outside the
tree or is excluded by ``.dockerignore``. :meth:`SourceTree.plan` lists what
a COPY reads, :func:`content_hash` fingerprints it for the layer cache.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.build.ignore import IgnoreRules
from engine.errors import InvalidSpec
from engine.runtime.rootpath import resolve_in_root

_WILDCARDS = "*?["
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One thing a COPY reads: ``rel`` is its path below the copied source ('' for the source itself)."""

    rel: str
    host_path: Path
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    link_target: str = ""

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
    """A directory COPY reads from: the build context or a stage's root file system."""

    def __init__(
        self, root: Path, rules: IgnoreRules | None = None, *, what: str = "the build context"
    ) -> None:
        self.root = root
        self.rules = rules or IgnoreRules([])
        self.what = what

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` is excluded by .dockerignore."""
        return bool(rel) and self.rules.excluded(rel)

    def resolve(self, patterns: list[str], instruction: str) -> list[Source]:
        """The sources ``patterns`` name (wildcards allowed); InvalidSpec if none match or one is refused."""
        sources: list[Source] = []
        for pattern in patterns:
            rel = self._clean(pattern, instruction)
            names = self._glob(rel) if any(c in rel for c in _WILDCARDS) else [rel]
            names = [n for n in names if not self._hidden(n)]
            if not names:
                raise InvalidSpec(
                    f"{instruction}: {pattern!r} matches no file in {self.what}"
                    + (" (it is excluded by .dockerignore)" if self._excluded_match(rel) else "")
                )
            for name in names:
                sources.append(self._source(name, pattern, instruction))
        return sources

    def _clean(self, pattern: str, instruction: str) -> str:
        cleaned = posixpath.normpath("/" + pattern.replace("\\", "/") if pattern.startswith("/") else pattern)
        cleaned = cleaned.lstrip("/")
        if cleaned == ".." or cleaned.startswith("../"):
            raise InvalidSpec(
                f"{instruction}: {pattern!r} is outside {self.what}; "
                "copy only files below the context directory"
            )
        return "" if cleaned == "." else cleaned

    def _glob(self, rel: str) -> list[str]:
        found = [""]
        for part in rel.split("/"):
            nxt: list[str] = []
            for base in found:
                host = resolve_in_root(self.root, base) if base else self.root
                if not host.is_dir():
                    continue
                for child in sorted(os.listdir(host)):
                    if fnmatch.fnmatchcase(child, part):
                        nxt.append(posixpath.join(base, child) if base else child)
            found = nxt
        return found

    def _excluded_match(self, rel: str) -> bool:
        return self.excluded(rel)

    def _hidden(self, rel: str) -> bool:
        """Excluded, unless something below it is re-included by a ``!`` pattern."""
        if not self.excluded(rel):
            return False
        if not self.rules.has_exceptions:
            return True
        host = resolve_in_root(self.root, rel)
        return not host.is_dir() or not any(True for _ in self._walk(host, rel))

    def _source(self, rel: str, pattern: str, instruction: str) -> Source:
        host = resolve_in_root(self.root, rel) if rel else self.root
        try:
            st = os.stat(host)  # the named source itself is followed (inside the tree), like Docker
        except FileNotFoundError:
            raise InvalidSpec(f"{instruction}: {pattern!r} does not exist in {self.what}") from None
        top = _entry("", host, st)
        if not stat.S_ISDIR(st.st_mode):
            return Source(rel, (top,))
        return Source(rel, (top, *self._walk(host, rel)))

    def _walk(self, host_dir: Path, rel_dir: str, below: str = "") -> Iterator[Entry]:
        with os.scandir(host_dir) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            ctx_rel = posixpath.join(rel_dir, child.name) if rel_dir else child.name
            sub_rel = posixpath.join(below, child.name) if below else child.name
            st = child.stat(follow_symlinks=False)
            link = os.readlink(child.path) if stat.S_ISLNK(st.st_mode) else ""
            entry = _entry(sub_rel, Path(child.path), st, link)
            if stat.S_ISDIR(st.st_mode):
                inner = list(self._walk(Path(child.path), ctx_rel, sub_rel))
                if not self.excluded(ctx_rel) or inner:
                    yield entry
                    yield from inner
            elif (entry.is_file or entry.is_symlink) and not self.excluded(ctx_rel):
                yield entry


def _entry(rel: str, host: Path, st: os.stat_result, link: str = "") -> Entry:
    return Entry(rel, host, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime, link)


def content_hash(sources: list[Source]) -> str:
    """A sha256 over every entry's path, type, mode, owner, size, link target and file content."""
    h = hashlib.sha256()
    for source in sources:
        h.update(f"source {source.name}\n".encode())
        for e in source.entries:
            h.update(f"{e.rel}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.size}\0{e.link_target}\n".encode())
            if e.is_file:
                fd = os.open(e.host_path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    while chunk := os.read(fd, _CHUNK):
                        h.update(chunk)
                finally:
                    os.close(fd)
    return h.hexdigest()
