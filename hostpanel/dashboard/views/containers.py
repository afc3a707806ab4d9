"""One container's page: its state, CPU and memory now (polled), its own stop / start / restart
buttons, then the live logs and the terminal."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page, require_developer, run_action, tenant_context, tenant_replica
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import Replica
from hostpanel.errors import NotFound, ServiceError
from hostpanel.tenants import units
from hostpanel.tenants.models import Role


@page
def container_detail(request: HttpRequest, slug: str, replica_id: int) -> HttpResponse:
    """One container: its state and use (live), then the log viewer and the terminal (developers)."""
    ctx = tenant_context(request, slug)
    replica = tenant_replica(ctx, replica_id)
    context = ctx.template_context() | {
        "replica": replica,
        "app": replica.app,
        "can_exec": ctx.at_least(Role.DEVELOPER),
        "section": "apps",
    }
    return render(request, "dashboard/container.html", context)


def _number(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def use_now(replica: Replica, reading: dict[str, Any], before: tuple[float, float] | None) -> dict[str, Any]:
    """What the page shows from one stats reading: memory of its limit, processes, and CPU in
    cores since the ``before`` reading (cpu_ns, at) the page sent back, when it has one."""
    cgroup = reading.get("cgroup") or {}
    release = replica.release
    cpu_ns, at = float(cgroup.get("cpu_usage_ns", 0)), float(reading.get("at", 0.0))
    cores = None
    if before is not None and at > before[1] and cpu_ns >= before[0]:
        cores = (cpu_ns - before[0]) / 1e9 / (at - before[1])
    memory = int(cgroup.get("memory_usage", 0))
    return {
        "cpu_ns": int(cpu_ns),
        "at": at,
        "cores": f"{cores:.2f}" if cores is not None else None,
        "cpu_share": round(100 * cores / (release.cpu_millis / 1000)) if cores is not None else None,
        "cpu_limit": units.cores(release.cpu_millis),
        "memory": units.size(memory),
        "memory_bytes": memory,
        "memory_limit": units.size(release.memory_bytes),
        "memory_limit_bytes": release.memory_bytes,
        "pids": int(cgroup.get("pids", 0)),
        "pids_limit": release.pids,
    }


@page
def container_live(request: HttpRequest, slug: str, replica_id: int) -> HttpResponse:
    """The polled part of the container page: state, CPU and memory now, the buttons."""
    ctx = tenant_context(request, slug)
    replica = tenant_replica(ctx, replica_id)
    use, problem = None, ""
    if replica.state == Replica.State.RUNNING and replica.host is not None:
        try:
            reading = deployments.container_stats(ctx.actor, replica)
        except ServiceError as exc:  # its host did not answer in time: say so, poll again
            problem = exc.message
        else:
            if reading and "error" not in reading:
                cpu, at = _number(request.GET.get("cpu_ns")), _number(request.GET.get("at"))
                use = use_now(replica, reading, (cpu, at) if cpu is not None and at is not None else None)
    context = ctx.template_context() | {
        "replica": replica,
        "app": replica.app,
        "use": use,
        "problem": problem,
    }
    return render(request, "dashboard/_container_live.html", context)


@page
@require_POST
def container_action(request: HttpRequest, slug: str, replica_id: int, action: str) -> HttpResponse:
    """stop, start or restart this one container, through the deployments service (audited)."""
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    replica = tenant_replica(ctx, replica_id)
    if action not in deployments.CONTAINER_ACTIONS:
        raise NotFound(f"no action {action!r}")

    def act() -> str:
        deployments.container_action(ctx.actor, replica, action)
        return f"{action.capitalize()} of {replica.container_name}: asked; its host does it now."

    run_action(request, act)
    return redirect("dashboard:container", slug=slug, replica_id=replica.pk)
