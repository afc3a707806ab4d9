"""A steady HTTP load for roll tests and bench/zero_downtime.py: a few threads sending GETs back to back.

Each request goes to ``target()`` (a URL, asked anew per request, so a test can
play the edge proxy's 1 s refresh of the rotation) with an optional ``Host``
header. Every answer is recorded with its time, latency, status and body, so a
test can say which request failed and what served the others.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when sent
    seconds: float
    status: int  # 0: no answer (connection refused, reset, timed out)
    body: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass
class Load:
    """``threads`` threads sending GETs to ``target()`` until :meth:`stop`."""

    target: Callable[[], str]
    host: str | None = None
    threads: int = 2
    timeout: float = 5.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout + 5)
        return self.samples

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = self.get(self.target())
            with self._lock:
                self.samples.append(sample)

    def get(self, url: str) -> Sample:
        """One GET of ``url`` (a new connection each time, as a client behind a proxy may well do)."""
        parts = urlsplit(url)
        started = time.monotonic()
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.timeout
        )
        try:
            conn.request("GET", parts.path or "/", headers={"Host": self.host} if self.host else {})
            response = conn.getresponse()
            body = response.read(4096).decode(errors="replace").strip()
            return Sample(started, time.monotonic() - started, response.status, body)
        except (OSError, http.client.HTTPException) as exc:
            return Sample(started, time.monotonic() - started, 0, "", f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def failed(self) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if not s.ok]

    def bodies_since(self, since: float) -> set[str]:
        with self._lock:
            return {s.body for s in self.samples if s.at >= since and s.ok}


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` by nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def private_port_range(size: int = 200) -> str:
    """A ``HOSTPANEL_PORT_RANGE`` of our own for a test or bench stack: other stacks on this machine
    publish from the default 30000-32767, and the kernel's ephemeral ports (32768-60999: every
    client socket, our load's too) must not collide with a published port either."""
    low = random.randrange(20000, 30000 - size, size)
    return f"{low}-{low + size - 1}"
