"""Health probes: run off the agent's control loop, from the container's side, bounded in time.

The reconcile only *submits* a due probe to a small bounded pool
(:class:`ProbeRunner`) and returns; a worker runs it and keeps the result for the
next reconcile (hostpanel/agent/remote.py), which reports it to the panel and acts on
it (restart after ``retries`` failures). A probe that hangs costs one worker for at most its ``timeout``,
and only its own replica's check; one tenant holds at most half the workers.

Kinds of probe (the release's ``health_check``):

- ``command``: a process in the container (``engine.exec``); healthy on exit 0.
- ``http``: ``GET <path>`` to the container's own address and ``port``, sent
  from *inside the container's network namespace* (``engine.in_network_namespace``),
  so ``127.0.0.1`` is the container and the host's own services are never
  reached. Only the status line is read. Healthy on 200-399. Redirects are
  never followed: a 3xx counts as success, as Kubernetes counts a redirect to
  another host (it does not follow it either), and the ``Location`` is never
  read, let alone fetched.
- ``tcp``: a TCP connect to the container's own address and ``port``, from the same side.

The result kept is a yes/no plus a short reason in the agent's log (status
code or connect error); no body is read, so nothing else comes back.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import close_old_connections

from engine.engine import Engine
from engine.errors import EngineError
from engine.runtime.model import Container, ExecSpec
from hostpanel.deployments.health import MAX_INTERVAL, PATH_RE, effective

log = logging.getLogger(__name__)

STATUS_LINE_MAX = 1024  # bytes read at most from an HTTP answer: its status line


@dataclass(frozen=True)
class HealthCheck:
    """A release's health check with its defaults filled in."""

    kind: str  # command, http or tcp
    interval: float
    timeout: float
    retries: int
    command: tuple[str, ...] = ()
    port: int = 0
    path: str = "/"

    @classmethod
    def parse(cls, data: dict[str, Any]) -> HealthCheck:
        hc = effective(data)
        # Clamped, for releases stored before the bounds existed (new ones are refused outside them).
        interval = min(float(hc["interval"]), MAX_INTERVAL)
        timeout, retries = min(float(hc["timeout"]), interval), int(hc["retries"])
        if "http" in hc:
            http = hc["http"]
            return cls(
                "http", interval, timeout, retries, port=int(http["port"]), path=str(http.get("path", "/"))
            )
        if "tcp" in hc:
            return cls("tcp", interval, timeout, retries, port=int(hc["tcp"]["port"]))
        return cls("command", interval, timeout, retries, command=tuple(hc["command"]))


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    reason: str  # for the agent's log: "HTTP 302", "connection refused", "timed out"


def readiness_check(port: int, timeout: float) -> HealthCheck:
    """The readiness gate of a replica serving HTTP without a health check: a TCP connect to its
    ``http_port``, once."""
    return HealthCheck("tcp", interval=timeout, timeout=timeout, retries=1, port=port)


# ---- what a reconcile does about a replica's health (remote.py) ---------------------------


@dataclass(frozen=True)
class HealthStep:
    """The next step of a running container's health check.

    ``start``: record it as ``starting`` now (its first check comes one interval later).
    ``restart``: it failed ``retries`` checks in a row and its policy restarts it.
    ``wait``: its next check is due in ``wait`` seconds. ``probe``: submit its check now.
    ``message`` is what its replica says meanwhile.
    """

    action: Literal["start", "restart", "wait", "probe"]
    wait: float = 0.0
    message: str = ""


def health_step(
    hc: HealthCheck,
    health: str,
    failures: int,
    checked_at: datetime | None,
    restart_policy: str,
    now: datetime,
) -> HealthStep:
    """Decide on a running container's health check from what its replica records (``health``,
    ``failures`` in a row, when it was last ``checked_at``)."""
    if checked_at is None or health == "":
        return HealthStep("start", wait=hc.interval)
    unhealthy = health == "unhealthy"
    if unhealthy and restart_policy != "no":
        return HealthStep(
            "restart", wait=hc.interval, message=f"restarted after {failures} failed health checks"
        )
    message = f"unhealthy: {failures} failed health checks" if unhealthy else ""
    due = checked_at + timedelta(seconds=hc.interval)
    if now < due:
        return HealthStep("wait", wait=(due - now).total_seconds(), message=message)
    return HealthStep("probe", message=message)


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe's result makes of the replica's health: ``health`` (None: unchanged), its
    ``failures`` in a row, and whether it is now ``ready`` (a passed check puts it in the rotation)."""

    health: str | None
    failures: int
    ready: bool


def probe_outcome(hc: HealthCheck, failures: int, result: ProbeResult) -> ProbeOutcome:
    """Count a probe's ``result`` after ``failures`` failed checks in a row: healthy and ready on a
    pass; at ``retries`` failures in a row, unhealthy (the next reconcile restarts it)."""
    if result.healthy:
        return ProbeOutcome("healthy", 0, True)
    failures += 1
    return ProbeOutcome("unhealthy" if failures >= hc.retries else None, failures, False)


# ---- the probes themselves (run inside the container's network namespace) --------------


def http_status(address: str, port: int, path: str, timeout: float) -> ProbeResult:
    """``GET path`` over HTTP/1.0 and read only the status line, all within ``timeout`` seconds."""
    if not PATH_RE.match(path):  # a release stored before the rule: never put it on the wire
        return ProbeResult(False, "invalid path")
    deadline = time.monotonic() + timeout
    with socket.create_connection((address, port), timeout=timeout) as sock:
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {address}:{port}\r\n"
            "User-Agent: hostpanel-health-probe\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode("ascii"))
        head = b""
        while b"\n" not in head and len(head) < STATUS_LINE_MAX:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)  # a server dripping bytes still ends at the deadline
            chunk = sock.recv(STATUS_LINE_MAX - len(head))
            if not chunk:
                break
            head += chunk
    parts = head.split(b"\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return ProbeResult(False, "not an HTTP answer")
    status = int(parts[1])
    return ProbeResult(200 <= status < 400, f"HTTP {status}")


def tcp_connect(address: str, port: int, timeout: float) -> ProbeResult:
    """A TCP connect within ``timeout`` seconds."""
    with socket.create_connection((address, port), timeout=timeout):
        return ProbeResult(True, "connected")


def _network_probe(engine: Engine, container: Container, hc: HealthCheck) -> ProbeResult:
    # The container's own address on its network; 127.0.0.1 (its loopback) without one.
    address = container.ip_address or "127.0.0.1"

    def probe() -> ProbeResult:
        try:
            if hc.kind == "http":
                return http_status(address, hc.port, hc.path, hc.timeout)
            return tcp_connect(address, hc.port, hc.timeout)
        except TimeoutError:
            return ProbeResult(False, "timed out")
        except OSError as exc:
            return ProbeResult(False, exc.strerror or type(exc).__name__)

    try:
        return engine.in_network_namespace(container.id, probe, timeout=hc.timeout)
    except EngineError as exc:
        return ProbeResult(False, str(exc))


def _command_probe(engine: Engine, container: Container, hc: HealthCheck) -> ProbeResult:
    try:
        proc = engine.exec(
            container.id, ExecSpec(command=hc.command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except EngineError as exc:
        return ProbeResult(False, str(exc))
    try:
        code = proc.wait(timeout=hc.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return ProbeResult(False, "timed out")
    return ProbeResult(code == 0, f"exit code {code}")


def run_probe(engine: Engine, container: Container, hc: HealthCheck) -> ProbeResult:
    """Run one health check of a running container and say whether it passed (bounded by its timeout)."""
    if hc.kind == "command":
        return _command_probe(engine, container, hc)
    return _network_probe(engine, container, hc)


# ---- the pool -------------------------------------------------------------------------


class ProbeRunner:
    """A bounded pool of probe workers, with at most one probe in flight per replica.

    A tenant may hold at most ``per_tenant`` workers (half of them by default),
    so one tenant's hanging probes delay only its own checks.
    """

    def __init__(
        self,
        workers: int,
        executor: Executor | None = None,
        per_tenant: int | None = None,
        after_job: Callable[[], None] = close_old_connections,
    ) -> None:
        self.executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self.after_job = after_job  # a worker thread's database connection is closed when it is done
        self.per_tenant = per_tenant or max(1, workers // 2)
        self._lock = threading.Lock()
        self._in_flight: dict[int, tuple[str, Future[None]]] = {}  # replica id -> (tenant, future)

    def in_flight(self, replica_id: int) -> bool:
        with self._lock:
            return replica_id in self._in_flight

    def submit(self, tenant: str, replica_id: int, job: Callable[[], None]) -> bool:
        """Queue ``job`` for this replica; False if one is already in flight or the tenant is at its share."""
        with self._lock:
            if replica_id in self._in_flight:
                return False
            if sum(1 for t, _ in self._in_flight.values() if t == tenant) >= self.per_tenant:
                return False
            future: Future[None] = Future()
            self._in_flight[replica_id] = (tenant, future)
        try:
            self.executor.submit(self._run, replica_id, job, future)
        except RuntimeError:  # shut down
            self._done(replica_id, future)
            return False
        return True

    def _run(self, replica_id: int, job: Callable[[], None], future: Future[None]) -> None:
        try:
            job()
        except Exception:
            log.exception("health probe of replica %s failed", replica_id)
        finally:
            self.after_job()
            self._done(replica_id, future)

    def _done(self, replica_id: int, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.pop(replica_id, None)
        future.set_result(None)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for the probes in flight now (tests, shutdown)."""
        with self._lock:
            futures = [f for _, f in self._in_flight.values()]
        for future in futures:
            future.result(timeout)


_runner: ProbeRunner | None = None
_runner_lock = threading.Lock()


def runner() -> ProbeRunner:
    """This process's probe pool (``HOSTPANEL_PROBE_WORKERS`` workers), made on first use."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = ProbeRunner(settings.HOSTPANEL_PROBE_WORKERS)
        return _runner
