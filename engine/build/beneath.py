"""Open paths below a directory without ever leaving it: the one door through which a build reads.

:func:`open_path` resolves a relative path from a directory fd with ``openat2``
(``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS``; ``RESOLVE_IN_ROOT`` for an image's
root file system, where an absolute link means the image's own root). Where the
kernel has no ``openat2`` it walks the path one component at a time with
``O_PATH | O_NOFOLLOW`` and resolves each symlink itself by the same rules, so
the kernel never follows a link. :func:`open_file` and :func:`read_file` then
accept regular files only (checked on the opened inode with ``fstat``, before a
byte is read) and bound their size; FIFOs, devices and sockets are refused.
Error messages name the path inside the tree and never its content.

The syscall is a seam (:data:`OPENAT2`): unit tests swap in the fallback walk.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from engine.errors import InvalidSpec

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture (asm-generic)
MAX_SYMLINKS = 40
_O_PATH = getattr(os, "O_PATH", 0o10000000)
_BASE = _O_PATH | os.O_CLOEXEC  # openat2 allows no other flag beside O_PATH


class Missing(InvalidSpec):
    """The path does not exist inside the tree (a dangling link counts as missing)."""


Openat2 = Callable[[int, str, int, int], int]
"""``(dirfd, path, open_flags, resolve_flags) -> fd``; raises OSError like the syscall."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _syscall_openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags, 0, resolve)
    fd = int(libc.syscall(_SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def walk_openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """``openat2`` done in user space: each component opened with ``O_PATH | O_NOFOLLOW``, each
    symlink read and resolved here (EXDEV for one leading out under RESOLVE_BENEATH, re-rooted
    under RESOLVE_IN_ROOT). Only ``O_PATH`` fds are returned (callers re-open)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") and not resolve & RESOLVE_IN_ROOT:
        raise OSError(errno.EXDEV, "absolute path", path)
    follow_last = not flags & os.O_NOFOLLOW
    stack = [os.dup(dirfd)]
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) == 1:
                    if not resolve & RESOLVE_IN_ROOT:
                        raise OSError(errno.EXDEV, "leads out of the directory", path)
                    continue
                os.close(stack.pop())
                continue
            fd = os.open(part, _BASE | os.O_NOFOLLOW, dir_fd=stack[-1])
            if stat.S_ISLNK(os.fstat(fd).st_mode) and (parts or follow_last):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    if not resolve & RESOLVE_IN_ROOT:
                        raise OSError(errno.EXDEV, "absolute symbolic link", path)
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            stack.append(fd)
        return os.dup(stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def _detect() -> Openat2:
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(_syscall_openat2(root, ".", _BASE, RESOLVE_BENEATH))
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):  # old kernel, or a seccomp filter refusing it
            return walk_openat2
    finally:
        os.close(root)
    return _syscall_openat2


OPENAT2: Openat2 = _detect()
"""The seam: the real syscall when the kernel has it, else :func:`walk_openat2`."""


def open_path(dirfd: int, rel: str, *, follow: bool = True, in_root: bool = False) -> int:
    """An ``O_PATH`` fd of ``rel`` below ``dirfd`` (the last component followed only when ``follow``).

    Raises OSError: EXDEV when the path or a symlink leads out (``in_root`` re-roots absolute
    links instead), ELOOP for too many links, ENOENT/ENOTDIR when missing."""
    resolve = RESOLVE_NO_MAGICLINKS | (RESOLVE_IN_ROOT if in_root else RESOLVE_BENEATH)
    flags = _BASE | (0 if follow else os.O_NOFOLLOW)
    return OPENAT2(dirfd, rel or ".", flags, resolve)


def kind_name(mode: int) -> str:
    """What a file of ``mode`` is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def refuse_special(mode: int, rel: str, what: str) -> None:
    """InvalidSpec unless ``mode`` is a regular file, a directory or a symlink."""
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        raise InvalidSpec(
            f"{rel!r} in {what} is {kind_name(mode)}; a build reads only regular files, "
            "directories and symbolic links: remove it from the context or exclude it in .dockerignore"
        )


OUTSIDE_HINT = "a build reads only files inside it: copy the file into the context"


def explain(exc: OSError, rel: str, what: str, hint: str = OUTSIDE_HINT) -> InvalidSpec:
    """A clear InvalidSpec for a failed :func:`open_path` (never the file's content); ``hint``
    says what to do about a path that leads out."""
    if exc.errno == errno.EXDEV:
        return InvalidSpec(
            f"{rel!r} leads out of {what} (through '..' or a symbolic link pointing outside); {hint}"
        )
    if exc.errno == errno.ELOOP:
        return InvalidSpec(f"{rel!r} in {what}: too many symbolic links (a loop?)")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return Missing(f"{rel!r} does not exist in {what}")
    return InvalidSpec(f"cannot open {rel!r} in {what}: {exc.strerror}")


def reopen(path_fd: int, flags: int = os.O_RDONLY) -> int:
    """A real fd for the inode an ``O_PATH`` fd names (same inode: no race with a rename)."""
    return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)


def open_file(
    dirfd: int,
    rel: str,
    *,
    what: str,
    limit: int | None = None,
    follow: bool = True,
    in_root: bool = False,
    hint: str = OUTSIDE_HINT,
) -> int:
    """A read-only fd of the regular file ``rel`` below ``dirfd``; InvalidSpec when it leads out,
    is missing, is not a regular file, or is larger than ``limit`` bytes (checked before reading)."""
    try:
        path_fd = open_path(dirfd, rel, follow=follow, in_root=in_root)
    except OSError as exc:
        raise explain(exc, rel, what, hint) from None
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                raise InvalidSpec(f"{rel!r} in {what} is {kind_name(st.st_mode)}, not a file")
            refuse_special(st.st_mode, rel, what)
        if limit is not None and st.st_size > limit:
            raise InvalidSpec(f"{rel!r} in {what} is larger than the limit of {limit} bytes")
        return reopen(path_fd)
    finally:
        os.close(path_fd)


def open_dir(dirfd: int, rel: str, *, what: str, in_root: bool = False) -> int:
    """A read-only fd of the directory ``rel`` below ``dirfd``; InvalidSpec when it is not one."""
    try:
        path_fd = open_path(dirfd, rel, in_root=in_root)
    except OSError as exc:
        raise explain(exc, rel, what) from None
    try:
        mode = os.fstat(path_fd).st_mode
        if not stat.S_ISDIR(mode):
            raise InvalidSpec(f"{rel!r} in {what} is {kind_name(mode)}, not a directory")
        return reopen(path_fd, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.close(path_fd)


def open_root(root: Path) -> int:
    """A directory fd of the tree's own root (a path the operator or the panel chose)."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def read_file(root: Path, rel: str, *, what: str, limit: int, hint: str = OUTSIDE_HINT) -> bytes:
    """The content of the regular file ``rel`` inside ``root`` (at most ``limit`` bytes, else
    InvalidSpec; a file growing while read is cut off and refused the same way)."""
    dirfd = open_root(root)
    try:
        fd = open_file(dirfd, rel, what=what, limit=limit, hint=hint)
    finally:
        os.close(dirfd)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidSpec(f"{rel!r} in {what} is larger than the limit of {limit} bytes")
    return data
