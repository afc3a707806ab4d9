"""What differs between two specs of an app, in words: the edit form's preview and the release list.

:func:`spec_changes` compares field by field (environment variables one by
one) and says each value as a person reads it: the command quoted as it will
run, memory in MiB/GiB, CPU in cores. Secret values never appear here (specs
only hold secret names).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hostpanel.deployments.models import Release
from hostpanel.deployments.services import AppSpec
from hostpanel.tenants import units

UNSET = "(not set)"

# the spec's fields in the order a person reads them, with their labels
LABELS = {
    "image": "Image",
    "command": "Command",
    "env": "Environment",
    "secrets": "Secrets",
    "network": "Network",
    "networks": "Tenant networks",
    "ports": "Published ports",
    "http_port": "HTTP port",
    "volumes": "Volumes",
    "replicas": "Replicas",
    "cpu_millis": "CPU per replica",
    "memory_bytes": "Memory per replica",
    "pids": "Processes per replica",
    "restart_policy": "Restart policy",
    "health_check": "Health check",
    "entrypoint": "Entrypoint",
    "user": "User",
    "working_dir": "Working directory",
    "stop_signal": "Stop signal",
    "stop_grace_seconds": "Stop grace (seconds)",
    "init": "Init process",
    "labels": "Labels",
    "tmpfs": "tmpfs mounts",
}


@dataclass(frozen=True)
class Change:
    """One difference: ``field`` of the spec (``env.NAME`` for a variable), its label and both values."""

    field: str
    label: str
    before: str
    after: str


def command_text(command: list[str]) -> str:
    """A command quoted as a shell would run it (empty: the image's own command)."""
    return shlex.join(command) if command else "(the image's own)"


def health_text(check: dict[str, Any] | None) -> str:
    """A health check in words: ``HTTP GET :8080/healthz every 10 s (timeout 2 s, 3 failures)``."""
    if not check:
        return "none"
    if "command" in check:
        what = f"command {shlex.join(check['command'])}"
    elif "http" in check:
        what = f"HTTP GET :{check['http'].get('port')}{check['http'].get('path', '/')}"
    else:
        what = f"TCP connect :{check.get('tcp', {}).get('port')}"
    extra = []
    if "interval" in check:
        extra.append(f"every {check['interval']:g} s")
    if "timeout" in check:
        extra.append(f"timeout {check['timeout']:g} s")
    if "retries" in check:
        extra.append(f"{check['retries']} failures before unhealthy")
    return f"{what} ({', '.join(extra)})" if extra else what


def value_text(field: str, value: Any) -> str:
    """One field's value as the dashboard shows it."""
    if field == "command":
        return command_text(value)
    if field == "memory_bytes":
        return units.size(value)
    if field == "cpu_millis":
        return units.cores(value)
    if field == "health_check":
        return health_text(value)
    if field == "ports":
        return ", ".join(f"{p['container_port']}/{p.get('protocol', 'tcp')}" for p in value) or "none"
    if field == "volumes":
        return (
            ", ".join(f"{v['name']}:{v['path']}{':ro' if v.get('read_only') else ''}" for v in value)
            or "none"
        )
    if field == "entrypoint":
        return "(the image's own)" if value is None else shlex.join(value) or "none"
    if field == "tmpfs":
        return ", ".join(f"{t['path']} ({units.size(t['size_bytes'])})" for t in value) or "none"
    if field == "labels":
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    if field in ("user", "working_dir", "stop_signal") and value == "":
        return "(the image's own)"
    if field == "networks":
        return (
            ", ".join(
                f"{j['name']} (also {', '.join(j['aliases'])})" if j.get("aliases") else j["name"]
                for j in value
            )
            or "none"
        )
    if field == "secrets":
        return (
            ", ".join(f"{s['name']} as ${s['env']}" if s.get("env") else s["name"] for s in value) or "none"
        )
    if value is None:
        return UNSET
    return str(value)


def spec_changes(old: AppSpec | None, new: AppSpec) -> list[Change]:
    """What ``new`` changes from ``old`` (``old`` None: every field of ``new`` is new)."""
    changes = []
    for field, label in LABELS.items():
        after = getattr(new, field)
        before = getattr(old, field) if old is not None else None
        if field == "env":
            changes += _env_changes(before or {}, after)
        elif old is None or before != after:
            changes.append(
                Change(field, label, value_text(field, before) if old else UNSET, value_text(field, after))
            )
    return changes


def _env_changes(before: dict[str, str], after: dict[str, str]) -> list[Change]:
    return [
        Change(f"env.{key}", f"Environment {key}", before.get(key, UNSET), after.get(key, UNSET))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def summary(changes: Iterable[Change]) -> str:
    """The changed fields' labels, for a release's note: ``image, command, env FOO``."""
    names: list[str] = []
    for change in changes:
        name = f"env {change.field[4:]}" if change.field.startswith("env.") else change.field
        if name not in names:
            names.append(name.replace("_", " "))
    return ", ".join(names)


def release_changes(releases: list[Release]) -> dict[int, list[Change]]:
    """Each release's changes from the version before it, by release id.

    ``releases`` must be one app's, newest first, with one more (older) at the end
    than will be shown; the oldest of all (version 1) compares with nothing.
    """
    result: dict[int, list[Change]] = {}
    for newer, older in zip(releases, [*releases[1:], None], strict=True):
        if older is None and newer.version > 1:
            continue  # its predecessor was not fetched: the caller does not show it
        base = AppSpec.from_release(older) if older is not None else None
        result[newer.pk] = spec_changes(base, AppSpec.from_release(newer)) if base else []
    return result
