"""Docker health checks (``Config.Healthcheck``): probes run in the container, results in its record.

A thread per running container with a check execs the test every interval (``start_interval``
during the start period), each bounded by its timeout, and records ``State.Health`` as dockerd
does: ``starting`` until the first pass, ``healthy``, or ``unhealthy`` after ``retries`` failures
in a row (failures in the start period do not count).
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.dockerapi.create import Healthcheck
from engine.dockerapi.record import DockerRecord, HealthState
from engine.errors import EngineError
from engine.runtime.model import ALIVE, ExecSpec

if TYPE_CHECKING:
    from engine.dockerapi.lifecycle import Lifecycle
    from engine.engine import Engine

NANO = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
OUTPUT_LIMIT = 4096

_running: set[tuple[str, str]] = set()
_lock = threading.Lock()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def command(check: Healthcheck) -> tuple[str, ...]:
    """The argv a check runs: ``CMD`` as given, ``CMD-SHELL`` through ``/bin/sh -c``."""
    if check.test[0] == "CMD-SHELL":
        return ("/bin/sh", "-c", " ".join(check.test[1:]))
    return tuple(check.test[1:])


def start(lifecycle: Lifecycle, cid: str) -> None:
    """Probe container ``cid`` while this run of it lasts (one thread per run; idempotent)."""
    container = lifecycle.current(cid)
    if container is None or container.status != "running":
        return
    key = (cid, container.started_at)
    with _lock:
        if key in _running:
            return
        _running.add(key)
    lifecycle.update(cid, _reset)
    threading.Thread(target=_loop, args=(lifecycle, key), name=f"health-{cid[:12]}", daemon=True).start()


def _reset(rec: DockerRecord) -> None:
    rec.health = HealthState()


def _loop(lifecycle: Lifecycle, key: tuple[str, str]) -> None:
    cid, started_at = key
    began = time.monotonic()
    try:
        while True:
            rec = lifecycle.record(cid)
            check = rec.check
            if check is None:
                return
            in_start_period = time.monotonic() - began < check.start_period / NANO
            starting = rec.health is None or rec.health.status == "starting"
            if in_start_period and starting:
                interval = check.start_interval / NANO if check.start_interval else DEFAULT_START_INTERVAL
            else:
                interval = check.interval / NANO if check.interval else DEFAULT_INTERVAL
            deadline = time.monotonic() + interval
            while (remaining := deadline - time.monotonic()) > 0:
                lifecycle.nap(remaining)  # woken early when a container stops or goes
                container = lifecycle.current(cid)
                if container is None or container.status not in ALIVE or container.started_at != started_at:
                    return
            now = lifecycle.current(cid)
            if now is not None and now.status == "paused":  # no probes while frozen, as dockerd
                continue
            entry = probe(lifecycle.engine, cid, check)
            retries = check.retries or DEFAULT_RETRIES
            still_starting = time.monotonic() - began < check.start_period / NANO

            def note(
                rec: DockerRecord,
                entry: dict[str, Any] = entry,
                grace: bool = still_starting,
                retries: int = retries,
            ) -> None:
                state = copy.copy(rec.health) if rec.health else HealthState()  # records are shared copies
                if grace and entry["ExitCode"] != 0 and state.status == "starting":
                    state.log = [*state.log, entry][-5:]
                else:
                    state.record(entry, retries)
                rec.health = state

            lifecycle.update(cid, note)
            lifecycle.changed()
    finally:
        with _lock:
            _running.discard(key)


def probe(engine: Engine, cid: str, check: Healthcheck) -> dict[str, Any]:
    """Run the check once in container ``cid``; a ``State.Health.Log`` entry (``ExitCode`` 0 passes).

    Also the probe of ``hpctl compose`` (depends_on: service_healthy).
    """
    timeout = check.timeout / NANO if check.timeout else DEFAULT_TIMEOUT
    begin = _now()
    try:
        proc = engine.exec(
            cid, ExecSpec(command=command(check)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except EngineError as exc:
        return {"Start": begin, "End": _now(), "ExitCode": -1, "Output": str(exc)[:OUTPUT_LIMIT]}
    try:
        output, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
        text = output.decode(errors="replace")[:OUTPUT_LIMIT]
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
        code, text = -1, f"Health check exceeded timeout ({timeout:g}s)"
    return {"Start": begin, "End": _now(), "ExitCode": code, "Output": text}
