"""Reading HostPanel's settings from the environment (no third-party helpers).

Kept apart from ``settings.py`` so the parsing can be unit-tested without
reloading Django settings.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False) -> bool:
    """``name`` from the environment as a boolean (1/true/yes/on or 0/false/no/off)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of 1/true/yes/on or 0/false/no/off")


def env_list(name: str, default: list[str]) -> list[str]:
    """``name`` from the environment as a comma-separated list (blank items dropped)."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_database_url(url: str, base_dir: Path) -> dict[str, Any]:
    """Turn a DATABASE_URL into a Django ``DATABASES`` entry.

    Supported: ``sqlite:///relative/path`` (relative to ``base_dir``),
    ``sqlite:////absolute/path``, ``sqlite://:memory:``, and
    ``postgres://`` / ``postgresql://`` ``user:password@host:port/name?option=value``
    (query options become ``OPTIONS``, e.g. ``sslmode=require``).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc == ":memory:" or parts.path in ("/:memory:", ""):
            name: str | Path = ":memory:"
        else:
            raw = unquote(parts.path[1:])  # drop the slash that separates netloc from path
            path = Path(raw)
            name = path if path.is_absolute() else base_dir / path
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in ("postgres", "postgresql", "pgsql"):
        db_name = unquote(parts.path.lstrip("/"))
        if not db_name:
            raise ValueError(f"DATABASE_URL {url!r} names no database (…/NAME)")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
        }
    raise ValueError(f"unsupported DATABASE_URL scheme {parts.scheme!r}: use sqlite:/// or postgres://")


def _private_file(path: Path, make: Callable[[], str]) -> str:
    """The stripped contents of ``path``, created first (mode 0600) with ``make()`` if missing.

    Processes starting together (`make run` starts several) agree on one value and never read a
    half-written file: the value is written to a private temporary file first, then linked into
    place, which fails if another process got there first (its value is used)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    value = make()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: use its (whole) value
            return path.read_text().strip()
    finally:
        os.unlink(tmp)
    return value


def load_secret_key(var_dir: Path, env_name: str = "HOSTPANEL_SECRET_KEY") -> str:
    """The secret key from ``env_name``, else from ``var_dir/secret_key``.

    The file is created on first use with a random key and mode 0600, so a
    fresh checkout works without configuration and restarts keep sessions.
    """
    from_env = os.environ.get(env_name)
    if from_env:
        return from_env
    return _private_file(var_dir / "secret_key", lambda: secrets.token_urlsafe(50))


def load_redis_password(var_dir: Path) -> str:
    """The password of the Redis that `make run` starts: ``var_dir/redis_password`` (0600, made once)."""
    return _private_file(var_dir / "redis_password", lambda: secrets.token_hex(32))


def redis_url(var_dir: Path) -> str:
    """``REDIS_URL`` from the environment, else the local Redis with the password `make run` set up."""
    return os.environ.get("REDIS_URL") or f"redis://:{load_redis_password(var_dir)}@127.0.0.1:6379/0"


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or tighten it to 0700 if group or others may enter it.

    The var directory holds the secret keys, the SQLite database, uploaded images and contexts.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite database file with mode 0600 before SQLite does (it would follow the
    umask, e.g. 0644), or tighten an existing one and its journal files to 0600.

    SQLite gives the journal, WAL and shared-memory files it creates the database file's mode.
    A missing directory is left for SQLite to report.
    """
    if not path.parent.is_dir():
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-journal", "-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(extra.lstat().st_mode) & 0o077 and not extra.is_symlink():
                os.chmod(extra, 0o600)
        except FileNotFoundError:
            continue


def main(argv: list[str]) -> int:
    """``python -m hostpanel.config redis-password VAR_DIR``: print the local Redis password (made once)."""
    if len(argv) != 2 or argv[0] != "redis-password":
        print("usage: python -m hostpanel.config redis-password VAR_DIR", file=sys.stderr)
        return 2
    print(load_redis_password(Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
