"""How a release's process runs: entrypoint, user, working directory, stop signal and grace,
init, the tenant's labels and tmpfs mounts (compose's keys, issue 14). One rule for every door
(the apps API, stacks); each error names its field."""

from __future__ import annotations

import re
from typing import Any

from engine.errors import InvalidSpec
from engine.runtime.process import normalize_signal
from engine.volumes.spec import validate_volume_target
from hostpanel.errors import InvalidRequest

USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
RESERVED_LABEL_PREFIX = "org.hostpanel."
MAX_LABELS = 64
MAX_STOP_GRACE = 3600
MAX_TMPFS = 8
DEFAULT_TMPFS_BYTES = 64 * 1024**2


def check_entrypoint(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) and "\0" not in a for a in value):
        raise InvalidRequest("entrypoint: give a list of strings (or null for the image's own)")
    return value


def check_user(value: Any) -> str:
    if value in ("", None):
        return ""
    if not isinstance(value, str) or not USER_RE.match(value):
        raise InvalidRequest("user: give a user and optional group, by name or number (1000:1000, app)")
    return value


def check_working_dir(value: Any) -> str:
    if value in ("", None):
        return ""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or len(value) > 255
        or "\0" in value
        or ".." in value.split("/")
    ):
        raise InvalidRequest("working_dir: give an absolute path in the container, without '..'")
    return value


def check_stop_signal(value: Any) -> str:
    if value in ("", None):
        return ""
    try:
        return normalize_signal(str(value))
    except InvalidSpec as exc:
        raise InvalidRequest(f"stop_signal: {exc}") from None


def check_stop_grace(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STOP_GRACE:
        raise InvalidRequest(f"stop_grace_seconds: give whole seconds, 0 to {MAX_STOP_GRACE}")
    return value


def check_labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_LABELS:
        raise InvalidRequest(f"labels: give an object of at most {MAX_LABELS} string labels")
    for key, text in value.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise InvalidRequest(f"labels: invalid label name {key!r}: letters, digits, '.', '_', '/', '-'")
        if key.lower().startswith(RESERVED_LABEL_PREFIX):
            raise InvalidRequest(f"labels: {key!r}: labels under {RESERVED_LABEL_PREFIX} are the panel's")
        if not isinstance(text, str) or "\0" in text or len(text) > 1024:
            raise InvalidRequest(f"labels: {key!r}: give a string of at most 1024 characters")
    return value


def check_tmpfs(value: Any, memory_bytes: int, taken_paths: set[str]) -> list[dict[str, Any]]:
    """``[{"path": ..., "size_bytes": ...}]``: each at its own path, at most the replica's memory
    (tmpfs pages count against it)."""
    if not isinstance(value, list) or len(value) > MAX_TMPFS:
        raise InvalidRequest(f'tmpfs: give at most {MAX_TMPFS} [{{"path": ..., "size_bytes": ...}}]')
    result = []
    paths = set(taken_paths)
    for item in value:
        if not isinstance(item, dict) or set(item) - {"path", "size_bytes"} or "path" not in item:
            raise InvalidRequest('tmpfs: give [{"path": /abs/path, "size_bytes": optional}]')
        try:
            path = validate_volume_target(str(item["path"]))
        except InvalidSpec as exc:
            raise InvalidRequest(f"tmpfs: {exc}") from None
        if path in paths:
            raise InvalidRequest(f"tmpfs: {path} is mounted twice")
        paths.add(path)
        size = item.get("size_bytes", min(DEFAULT_TMPFS_BYTES, memory_bytes))
        if isinstance(size, bool) or not isinstance(size, int) or not 4096 <= size <= memory_bytes:
            raise InvalidRequest(
                f"tmpfs: {path}: size_bytes from 4096 to the replica's memory ({memory_bytes})"
            )
        result.append({"path": path, "size_bytes": size})
    return result
