"""Small file-system helpers used across the engine: atomic writes and locks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, value: Any, mode: int = 0o644, *, compact: bool = False) -> None:
    """Write ``value`` as JSON to ``path`` atomically (``compact`` for machine-only files)."""
    text = (
        json.dumps(value, separators=(",", ":")) if compact else json.dumps(value, indent=1, sort_keys=True)
    )
    atomic_write_bytes(path, text.encode(), mode)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with open(path, "rb") as f:
        return json.load(f)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock_if_free(path: Path) -> Iterator[bool]:
    """Try to take the exclusive flock on an existing ``path`` without waiting: yields True when
    taken (held for the block), or when ``path`` does not exist (nobody can hold it), False when
    another open file holds it. Never creates ``path``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


T = TypeVar("T")


def shallow_copy(obj: T) -> T:
    """A new object of ``obj``'s class sharing its attribute values (``copy.copy`` without the
    pickle protocol: a tenth of the time, for caches that hand out a record per caller)."""
    clone = object.__new__(type(obj))
    clone.__dict__.update(obj.__dict__)
    return clone
