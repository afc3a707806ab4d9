"""Resolve paths inside a container root file system as the container would.

A symlink in an image is resolved relative to the container's root, never
the host's: ``/etc/passwd -> /host/secret`` stays inside the rootfs. Used to
read /etc/passwd, look up commands on $PATH and check working directories
before a container starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from engine.errors import InvalidSpec

MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str) -> Path:
    """Host path of ``path`` inside ``root``, following symlinks without leaving root.

    The result may not exist (the last components are kept as given).
    Raises InvalidSpec on a symlink loop.
    """
    parts = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise InvalidSpec(f"too many symbolic links resolving {path!r} in the image")
            target = os.readlink(candidate)
            target_parts = list(PurePosixPath(target).parts)
            if target.startswith("/"):
                resolved = []
                target_parts = target_parts[1:]
            parts = target_parts + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def read_text_in_root(root: Path, path: str) -> str | None:
    """Content of a regular file inside ``root``, or None if it is missing or not a file."""
    host = resolve_in_root(root, path)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace", closefd=False) as f:
            return f.read(4 * 1024 * 1024)
    finally:
        os.close(fd)


def is_executable_in_root(root: Path, path: str) -> bool:
    """Whether ``path`` inside ``root`` is a regular file with an execute bit."""
    host = resolve_in_root(root, path)
    try:
        st = os.stat(host, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def find_command(root: Path, command: str, env: dict[str, str]) -> str | None:
    """The path of ``command`` in the image: as given if it has a '/', else searched on $PATH."""
    if "/" in command:
        return command if is_executable_in_root(root, command) else None
    for directory in env.get("PATH", "").split(":"):
        if directory.startswith("/"):
            candidate = f"{directory.rstrip('/')}/{command}"
            if is_executable_in_root(root, candidate):
                return candidate
    return None
