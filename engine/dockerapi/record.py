"""The Docker side of a container: what the API promised that the engine's record does not hold.

Restart policy, health check and its state, ``AutoRemove`` (``--rm``), TTY and attach flags,
the Cmd/Entrypoint as Docker shows them, anonymous volumes. Kept as ``docker.json`` in the
container's own directory, so it goes when the container goes, whoever removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.dockerapi.create import CreateRequest, Healthcheck, RestartPolicy
from engine.fsutil import atomic_write_json, shallow_copy

RECORD_FILE = "docker.json"
HEALTH_LOG_KEEP = 5


@dataclass
class HealthState:
    """``State.Health``: ``starting``, ``healthy`` or ``unhealthy``, with the last probes."""

    status: str = "starting"
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def record(self, entry: dict[str, Any], retries: int) -> None:
        """Add one probe's result (``ExitCode`` 0 passes); updates the status like dockerd."""
        self.log = [*self.log, entry][-HEALTH_LOG_KEEP:]
        if entry.get("ExitCode") == 0:
            self.status, self.failing_streak = "healthy", 0
        else:
            self.failing_streak += 1
            if self.failing_streak >= max(retries, 1):
                self.status = "unhealthy"


@dataclass
class DockerRecord:
    """Per-container Docker settings and state (see the module docstring)."""

    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    auto_remove: bool = False
    restart_policy: dict[str, Any] = field(default_factory=lambda: {"Name": "no", "MaximumRetryCount": 0})
    healthcheck: dict[str, Any] | None = None
    exposed_ports: list[str] = field(default_factory=list)
    anonymous_volumes: list[str] = field(default_factory=list)
    host_config: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    manually_stopped: bool = False
    health: HealthState | None = None

    @classmethod
    def from_request(
        cls, req: CreateRequest, anonymous_volumes: list[str], host_config: dict[str, Any]
    ) -> DockerRecord:
        """The record for a container created from ``req``."""
        policy = req.restart_policy
        return cls(
            cmd=list(req.cmd) if req.cmd is not None else None,
            entrypoint=list(req.entrypoint) if req.entrypoint is not None else None,
            tty=req.tty,
            open_stdin=req.open_stdin,
            stdin_once=req.stdin_once,
            attach_stdin=req.attach_stdin,
            attach_stdout=req.attach_stdout,
            attach_stderr=req.attach_stderr,
            auto_remove=req.auto_remove,
            restart_policy={"Name": policy.name, "MaximumRetryCount": policy.maximum_retry_count},
            healthcheck=_healthcheck_json(req.healthcheck),
            exposed_ports=list(req.exposed_ports),
            anonymous_volumes=anonymous_volumes,
            host_config=host_config,
        )

    @property
    def policy(self) -> RestartPolicy:
        """The restart policy as the parsed dataclass."""
        return RestartPolicy(
            str(self.restart_policy.get("Name") or "no"),
            int(self.restart_policy.get("MaximumRetryCount") or 0),
        )

    @property
    def check(self) -> Healthcheck | None:
        """The health check as the parsed dataclass (None when there is none or it is disabled)."""
        if not self.healthcheck or not self.healthcheck.get("Test") or self.healthcheck["Test"][0] == "NONE":
            return None
        h = self.healthcheck
        return Healthcheck(
            test=tuple(h["Test"]),
            interval=int(h.get("Interval") or 0),
            timeout=int(h.get("Timeout") or 0),
            retries=int(h.get("Retries") or 0),
            start_period=int(h.get("StartPeriod") or 0),
            start_interval=int(h.get("StartInterval") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DockerRecord:
        """Rebuild a record, ignoring keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        health = known.pop("health", None)
        record = cls(**known)
        if isinstance(health, dict):
            record.health = HealthState(**health)
        return record


def _healthcheck_json(check: Healthcheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    data: dict[str, Any] = {"Test": list(check.test)}
    for key, value in (
        ("Interval", check.interval),
        ("Timeout", check.timeout),
        ("Retries", check.retries),
        ("StartPeriod", check.start_period),
        ("StartInterval", check.start_interval),
    ):
        if value:
            data[key] = value
    return data


# Parsed records by path, checked against the file's identity: `docker ps` reads one per container.
_cache: dict[str, tuple[tuple[int, int, int], DockerRecord]] = {}
_cache_lock = threading.Lock()


def load(directory: str | Path) -> DockerRecord:
    """The record in a container's directory; a default one for containers made outside the API.

    Each caller gets its own record object: change its fields by assignment, never in place.
    """
    path = f"{directory}/{RECORD_FILE}"
    try:
        st = os.stat(path)
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        with _cache_lock:
            cached = _cache.get(path)
        if cached is None or cached[0] != identity:
            with open(path, "rb") as f:
                data = json.load(f)
            if not isinstance(data, dict):
                return DockerRecord()
            cached = (identity, DockerRecord.from_dict(data))
            with _cache_lock:
                _cache[path] = cached
        return shallow_copy(cached[1])
    except FileNotFoundError:
        with _cache_lock:
            _cache.pop(path, None)
        return DockerRecord()
    except (ValueError, TypeError):
        return DockerRecord()


def save(directory: str | Path, record: DockerRecord) -> None:
    """Write the record; a container removed meanwhile (no directory) is left alone."""
    with contextlib.suppress(FileNotFoundError):
        atomic_write_json(Path(directory, RECORD_FILE), record.to_dict(), mode=0o600, compact=True)
