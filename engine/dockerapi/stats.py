"""``GET /containers/{id}/stats``: the engine's cgroup readings in Docker's stats shape.

`docker stats` computes CPU % as (container CPU delta / host CPU delta) x online CPUs from
``cpu_stats`` and ``precpu_stats``, and memory from ``memory_stats.usage`` (the engine already
reports the working set, page cache left out) against ``limit`` (the host's memory when the
container has none). ``stream=1`` (the default) sends one reading a second; ``stream=0`` takes
two readings a second apart, as dockerd does, unless ``one-shot=1`` asks for one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.cgroups.controller import CgroupStats
from engine.dockerapi.events import client_gone
from engine.dockerapi.http import Request, Response, Router, Stream, json_response
from engine.dockerapi.lifecycle import find_container
from engine.errors import NotFound
from engine.runtime.model import ALIVE, Container
from engine.runtime.procfs import NetCounters, host_cpu_ns, net_counters, online_cpus

if TYPE_CHECKING:
    from engine.engine import Engine

SAMPLE_SECONDS = 1.0
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Sample:
    """One reading of a container (None when it has no cgroup: not running) and of the host's CPU."""

    read: str
    cgroup: CgroupStats | None
    system_cpu_ns: int
    networks: Mapping[str, NetCounters] = field(default_factory=dict)


def take_sample(engine: Engine, container: Container) -> Sample:
    """Read the container's cgroup, the host's CPU time and the container's network counters now."""
    readings = engine.stats([container.id]) if container.status in ALIVE else []
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    networks = net_counters(container.pid) if readings and container.network not in ("none", "host") else {}
    return Sample(stamp, readings[0].cgroup if readings else None, host_cpu_ns(), networks)


def _cpu(sample: Sample | None, cpus: int) -> dict[str, Any]:
    reading = sample.cgroup if sample is not None else None
    return {
        "cpu_usage": {
            "total_usage": reading.cpu_usage_ns if reading else 0,
            "usage_in_kernelmode": 0,
            "usage_in_usermode": 0,
        },
        "system_cpu_usage": sample.system_cpu_ns if sample is not None and reading else 0,
        "online_cpus": cpus if reading else 0,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    """``sample`` as JSON-able data (a host agent sends it to the tenants' door)."""
    return {
        "read": sample.read,
        "cgroup": dataclasses.asdict(sample.cgroup) if sample.cgroup is not None else None,
        "system_cpu_ns": sample.system_cpu_ns,
        "networks": {name: vars(counters) for name, counters in sample.networks.items()},
    }


def sample_from_dict(data: Mapping[str, Any]) -> Sample:
    """The :class:`Sample` :func:`sample_to_dict` made. Raises KeyError/TypeError when malformed."""
    cgroup = data["cgroup"]
    return Sample(
        read=str(data["read"]),
        cgroup=CgroupStats(**cgroup) if cgroup is not None else None,
        system_cpu_ns=int(data["system_cpu_ns"]),
        networks={name: NetCounters(**counters) for name, counters in data["networks"].items()},
    )


def stats_json(
    container: Container, current: Sample, previous: Sample | None, *, cpus: int, host_memory: int
) -> dict[str, Any]:
    """Docker's stats object for ``current`` (``previous`` fills ``precpu_stats``)."""
    return stats_document(container.name, container.id, current, previous, cpus=cpus, host_memory=host_memory)


def stats_document(
    name: str, cid: str, current: Sample, previous: Sample | None, *, cpus: int, host_memory: int
) -> dict[str, Any]:
    """Docker's stats object of container ``name`` (id ``cid``) for ``current``; ``cpus`` and
    ``host_memory`` are those of the container's host."""
    reading = current.cgroup
    memory: dict[str, Any] = {}
    pids: dict[str, Any] = {}
    io: list[dict[str, Any]] = []
    if reading is not None:
        memory = {"usage": reading.memory_usage, "limit": reading.memory_limit or host_memory, "stats": {}}
        pids = {"current": reading.pids}
        if reading.pids_limit is not None:
            pids["limit"] = reading.pids_limit
        io = [
            {"major": 0, "minor": 0, "op": "read", "value": reading.io_read_bytes},
            {"major": 0, "minor": 0, "op": "write", "value": reading.io_write_bytes},
        ]
    data: dict[str, Any] = {
        "name": f"/{name}",
        "id": cid,
        "read": current.read if reading is not None else ZERO_TIME,
        "preread": previous.read if previous is not None and previous.cgroup is not None else ZERO_TIME,
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": io or None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(current, cpus),
        "precpu_stats": _cpu(previous, cpus),
        "memory_stats": memory,
    }
    if current.networks:
        data["networks"] = {name: vars(counters) for name, counters in current.networks.items()}
    return data


def host_memory() -> int:
    """The host's memory in bytes (the limit `docker stats` shows for a container without one)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def register(router: Router, engine: Engine) -> None:
    """Add ``GET /containers/{id}/stats`` for ``engine`` to ``router``."""

    @router.route("GET", "/containers/{id}/stats")
    def stats(request: Request) -> Response | Stream:
        return stats_answer(engine, find_container(engine, request.params["id"]), request)


def stats_answer(engine: Engine, container: Container, request: Request) -> Response | Stream:
    """The stats answer for a container the caller may see (the tenant door reuses this)."""
    cpus, memory = online_cpus(), host_memory()

    def render(current: Sample, previous: Sample | None) -> dict[str, Any]:
        return stats_json(container, current, previous, cpus=cpus, host_memory=memory)

    if not request.flag("stream", default=True):
        first = take_sample(engine, container)
        if request.flag("one-shot") or first.cgroup is None:
            return json_response(render(first, None))
        time.sleep(SAMPLE_SECONDS)
        return json_response(render(take_sample(engine, container), first))

    def chunks() -> Iterator[bytes]:
        previous: Sample | None = None
        while not client_gone(request.connection):
            try:
                current = take_sample(engine, engine.get(container.id))
            except NotFound:  # removed meanwhile: the stream ends
                return
            yield json_response(render(current, previous)).body
            if current.cgroup is None:
                return
            previous = current
            time.sleep(SAMPLE_SECONDS)

    return Stream(chunks())
