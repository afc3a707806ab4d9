"""Cross-references of a project: undefined networks/volumes/secrets/services, depends_on cycles,
and the start order (waves) that depends_on gives."""

from __future__ import annotations

from collections.abc import Mapping

from engine.compose.model import Project, Service
from engine.compose.problems import Problem
from engine.compose.yamlload import Document


def find_cycle(deps: Mapping[str, Mapping[str, str]]) -> list[str] | None:
    """A depends_on cycle as ``[a, b, ..., a]``, or None. Unknown names are ignored."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(deps.get(name, {})):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(deps):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def _has_check(service: Service) -> bool:
    check = service.healthcheck
    return check is not None and not check.disabled and bool(check.test)


def check(project: Project, doc: Document) -> list[Problem]:
    """References to things the file does not define, and a depends_on cycle."""
    problems: list[Problem] = []
    for name, service in project.services.items():
        p = ("services", name)
        for net in service.networks:
            if net not in project.networks:
                problems.append(doc.problem((*p, "networks", net), f"network {net!r} is not defined"))
        for i, mount in enumerate(service.volumes):
            if mount.type == "volume" and mount.source is not None and mount.source not in project.volumes:
                problems.append(
                    doc.problem((*p, "volumes", i), f"volume {mount.source!r} is not defined under volumes:")
                )
        for i, ref in enumerate(service.secrets):
            if ref.source not in project.secrets:
                problems.append(
                    doc.problem((*p, "secrets", i), f"secret {ref.source!r} is not defined under secrets:")
                )
        for dep, condition in service.depends_on.items():
            if dep not in project.services:
                problems.append(doc.problem((*p, "depends_on", dep), f"service {dep!r} is not defined"))
            elif dep == name:
                problems.append(doc.problem((*p, "depends_on", dep), "a service cannot depend on itself"))
            elif condition == "service_healthy" and not _has_check(project.services[dep]):
                message = f"service_healthy needs a healthcheck: on service {dep!r} (it has none)"
                problems.append(doc.problem((*p, "depends_on", dep), message))
    cycle = find_cycle({n: s.depends_on for n, s in project.services.items()})
    if cycle and len(cycle) > 2:
        problems.append(
            doc.problem(
                ("services", cycle[0], "depends_on", cycle[1]), "depends_on cycle: " + " -> ".join(cycle)
            )
        )
    return problems


def start_order(project: Project) -> list[list[str]]:
    """The services in waves: each wave depends only on earlier ones (names sorted in a wave).

    Stopping goes in the reverse order. Raises ValueError on a cycle (load_project refuses those).
    """
    remaining = {n: set(s.depends_on) & set(project.services) for n, s in project.services.items()}
    waves: list[list[str]] = []
    while remaining:
        wave = sorted(n for n, deps in remaining.items() if not deps)
        if not wave:
            raise ValueError("depends_on cycle among " + ", ".join(sorted(remaining)))
        waves.append(wave)
        for name in wave:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(wave)
    return waves
