"""``docker top`` and ``docker stats`` for tenants: readings the container's host agent takes.

Reads, so a viewer's certificate may use them. The agent answers synchronously
(``dispatch.fetch_top`` / ``fetch_sample``, like the dashboard's stats); the answers are
shaped by the engine's own operator endpoints (:func:`engine.dockerapi.control.top_json`,
:func:`engine.dockerapi.stats.stats_document`), with the door's container id and name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from engine.dockerapi.control import check_ps_args, top_json
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, json_response
from engine.dockerapi.stats import SAMPLE_SECONDS, ZERO_TIME, Sample, sample_from_dict, stats_document
from engine.runtime.procfs import ProcessRow
from hostpanel.deployments.models import Replica
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.lookup import client_gone, find, identity_of, replica_of
from hostpanel.dockerapi.models import DockerContainer
from hostpanel.hosts import dispatch

NOT_RUNNING = Sample(read=ZERO_TIME, cgroup=None, system_cpu_ns=0)


def register(router: Router) -> None:
    """Add ``top`` and ``stats`` to the tenants' door."""
    router.add("GET", "/containers/{id}/top", translated(container_top))
    router.add("GET", "/containers/{id}/stats", translated(container_stats))


def running_replica(container: DockerContainer) -> Replica | None:
    """The container's replica when it runs on a host."""
    replica = replica_of(container)
    if replica is None or replica.host is None or replica.state != Replica.State.RUNNING:
        return None
    return replica


def container_top(request: Request) -> Response:
    """``GET /containers/{id}/top``: the `ps -ef` columns of the container's processes."""
    container = find(identity_of(request), request.params["id"])
    check_ps_args(request)
    replica = running_replica(container)
    answer = dispatch.fetch_top(replica.pk, replica.host.queue) if replica and replica.host else {}
    if "processes" not in answer:
        raise APIError(409, f"Container {container.docker_id} is not running")
    return json_response(top_json([ProcessRow(**row) for row in answer["processes"]]))


def take(container: DockerContainer) -> tuple[Sample, int, int]:
    """A sample of the container from its host, with the host's CPU count and memory."""
    replica = running_replica(container)
    if replica is None or replica.host is None:
        return NOT_RUNNING, 0, 0
    answer = dispatch.fetch_sample(replica.pk, replica.host.queue)
    if "sample" not in answer:
        return NOT_RUNNING, 0, 0
    return sample_from_dict(answer["sample"]), int(answer["cpus"]), int(answer["host_memory"])


def container_stats(request: Request) -> Response | Stream:
    """``GET /containers/{id}/stats``: ``stream`` (one a second), or one answer (two samples a
    second apart, as dockerd does, unless ``one-shot``)."""
    container = find(identity_of(request), request.params["id"])

    def render(current: tuple[Sample, int, int], previous: Sample | None) -> dict[str, Any]:
        sample, cpus, memory = current
        return stats_document(
            container.name, container.docker_id, sample, previous, cpus=cpus, host_memory=memory
        )

    if not request.flag("stream", default=True):
        first = take(container)
        if request.flag("one-shot") or first[0].cgroup is None:
            return json_response(render(first, None))
        time.sleep(SAMPLE_SECONDS)
        return json_response(render(take(container), first[0]))

    def chunks() -> Iterator[bytes]:
        previous: Sample | None = None
        while not client_gone(request.connection):
            current = take(container)
            yield json_response(render(current, previous)).body
            if current[0].cgroup is None:
                return
            previous = current[0]
            time.sleep(SAMPLE_SECONDS)

    return Stream(chunks())
