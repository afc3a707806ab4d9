"""A parsed create body (:class:`CreateRequest`) as the engine's :class:`ContainerSpec` (pure).

What the engine has no field for (restart policy, health check, ``--rm``, TTY flags) stays in
the Docker side record (:mod:`engine.dockerapi.record`); everything else is translated here.
Random parts (names of anonymous volumes, free host ports) come from the caller so this stays
deterministic under test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.cgroups.resources import CPU_PERIOD_US, Resources
from engine.dockerapi.create import CreateRequest, MountRequest, PortBinding
from engine.networks.model import NetworkJoin, PortMapping
from engine.runtime.model import ContainerSpec, LogOptions
from engine.volumes.spec import MountSpec

NANO = 1_000_000_000
DEFAULT_STOP_TIMEOUT = 10


def resources(req: CreateRequest) -> Resources:
    """The container's limits: memory, CPU (``NanoCpus`` or ``CpuQuota``/``CpuPeriod``), shares, pids."""
    period = req.cpu_period or CPU_PERIOD_US
    quota = req.cpu_quota
    if req.nano_cpus:
        period = CPU_PERIOD_US
        quota = max(1000, req.nano_cpus * CPU_PERIOD_US // NANO)
    return Resources(
        memory=req.memory,
        memory_reservation=req.memory_reservation,
        cpu_quota=quota,
        cpu_period=period,
        cpu_shares=req.cpu_shares,
        pids=req.pids_limit,
    )


def mount_specs(mounts: tuple[MountRequest, ...], anonymous_name: Callable[[], str]) -> tuple[MountSpec, ...]:
    """Volume and tmpfs mounts as the engine's; an anonymous volume gets ``anonymous_name()``."""
    return tuple(
        MountSpec(
            kind=m.kind,
            target=m.target,
            source=(m.source or anonymous_name()) if m.kind == "volume" else "",
            read_only=m.read_only,
            size=m.size,
            mode=m.mode,
        )
        for m in mounts
    )


def port_mappings(req: CreateRequest, free_port: Callable[[str, str], int]) -> tuple[PortMapping, ...]:
    """Published ports; a binding without a host port (or ``-P``) gets ``free_port(protocol, ip)``."""
    result: list[PortMapping] = []
    bound = {(p.container_port, p.protocol) for p in req.ports}
    bindings = list(req.ports)
    if req.publish_all_ports:
        for exposed in req.exposed_ports:
            port, _, protocol = exposed.partition("/")
            if port.isdigit() and (int(port), protocol or "tcp") not in bound:
                bindings.append(PortBinding(int(port), protocol or "tcp"))
    for b in bindings:
        host_ip = b.host_ip or "0.0.0.0"
        host_port = b.host_port or free_port(b.protocol, host_ip)
        result.append(PortMapping(host_port, b.container_port, b.protocol, host_ip))
    return tuple(result)


def container_spec(
    req: CreateRequest,
    *,
    name: str | None,
    tenant: str,
    anonymous_name: Callable[[], str],
    free_port: Callable[[str, str], int],
    extra: Mapping[str, Any] | None = None,
) -> ContainerSpec:
    """The engine spec for ``req``; ``extra`` adds spec fields other parts own (the TTY seam)."""
    log = LogOptions(
        max_size=req.log_max_size or LogOptions.max_size,
        max_files=req.log_max_files or LogOptions.max_files,
    )
    return ContainerSpec(
        image=req.image,
        command=req.cmd or (),
        entrypoint=req.entrypoint,
        name=name,
        tenant=tenant,
        env=req.env,
        workdir=req.workdir or None,
        user=req.user or None,
        hostname=req.hostname or None,
        init=req.init,
        stop_signal=req.stop_signal or None,
        stop_timeout=req.stop_timeout if req.stop_timeout is not None else DEFAULT_STOP_TIMEOUT,
        labels=dict(req.labels),
        log=log,
        resources=resources(req),
        network=req.network_mode,
        network_aliases=req.aliases,
        networks=(NetworkJoin(req.network_mode, req.aliases), *req.networks) if req.networks else (),
        ports=port_mappings(req, free_port),
        mounts=mount_specs(req.tmpfs + req.mounts, anonymous_name),
        **dict(extra or {}),
    )
