"""Business rules of stacks: deploy a compose file as apps, redeploy it in place, take it down.

Everything is made through the services below (deployments, networks, volumes, builds), in one
transaction: a refused file, a name taken outside the stack or a stack over the quota (checked as
a whole first) creates nothing. Services with ``depends_on`` are created stopped and started by
:func:`advance` (once the request's transaction commits, then at the panel's periodic host checks:
``manage.py watchhosts``) once their dependencies meet the condition; no request thread waits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from engine.compose import ComposeError, Project, load_project, service_digest
from hostpanel.audit.services import Actor, audited
from hostpanel.builds.models import Build
from hostpanel.builds.services import start_build
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.errors import Conflict, InvalidRequest, NotFound, ServiceError
from hostpanel.networks.models import Network
from hostpanel.networks.services import create_network, delete_network
from hostpanel.stacks import dispatch, sources
from hostpanel.stacks.models import STACK_NAME_RE, Stack, StackResource, StackService
from hostpanel.stacks.sources import MAX_SOURCE_BYTES, Source
from hostpanel.stacks.translate import Names, app_spec_fields, from_compose_error, names_of, refused
from hostpanel.tenants.access import require_role
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import Usage, check_quota
from hostpanel.volumes.models import Volume
from hostpanel.volumes.services import create_volume, delete_volume

log = logging.getLogger(__name__)

DEADLINE = timedelta(minutes=15)  # a stack whose services still wait then has failed


@dataclass
class Plan:
    """What one service becomes: its app's spec fields, digest and dependencies."""

    name: str
    line: int
    digest: str
    fields: dict[str, Any]
    depends_on: dict[str, str]
    build: Any = None  # engine.compose BuildDef, when the image is built
    changes: dict[str, Any] = field(default_factory=dict)


# ---- queries ------------------------------------------------------------------------
def visible_stacks(actor: Actor, tenant: Tenant) -> QuerySet[Stack]:
    require_role(actor, tenant, Role.VIEWER)
    return Stack.objects.filter(tenant=tenant).prefetch_related("services__app__replicas")


def get_stack(actor: Actor, tenant: Tenant, name: str) -> Stack:
    """The tenant's stack ``name``; NotFound otherwise (another tenant's is unknown too)."""
    stack = visible_stacks(actor, tenant).filter(name=name).first()
    if stack is None:
        raise NotFound(f"no stack {name!r} in tenant {tenant.slug!r}")
    return stack


# ---- parsing and planning -------------------------------------------------------------
def _check_name(name: Any) -> str:
    import re

    if not isinstance(name, str) or not re.match(STACK_NAME_RE, name):
        raise InvalidRequest(
            "name: use 1-30 lowercase letters, digits and '-', starting with a letter or digit"
        )
    return name


def _check_env(env: Any) -> dict[str, str]:
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise InvalidRequest('env: give an object of string values, e.g. {"TAG": "1.2"}')
    return dict(env)


def load(name: str, source: Source, env: dict[str, str]) -> Project:
    """The parsed project; InvalidRequest listing every problem with its key and line."""
    if not isinstance(source.text, str) or not source.text.strip():
        raise InvalidRequest("compose: give the compose file's text")
    if len(source.text.encode()) > MAX_SOURCE_BYTES:
        raise InvalidRequest(f"compose: the file is larger than {MAX_SOURCE_BYTES} bytes")
    try:
        return load_project(
            source.text, name=name, environ=env, base_dir=source.base_dir, allow_host_binds=False
        )
    except ComposeError as exc:
        raise from_compose_error(exc) from None


def plan(tenant: Tenant, stack: str, project: Project, names: Names) -> list[Plan]:
    """Each service's plan; InvalidRequest for what the panel cannot run (every problem at once)."""
    plans: list[Plan] = []
    problems: list[dict[str, Any]] = []
    for service in project.services.values():
        image = service.image or ""
        if service.build is not None:
            image = f"{tenant.slug}/{stack}-{service.name}:latest"
        try:
            spec_fields = app_spec_fields(service, names, image=image)
        except InvalidRequest as exc:
            problems += exc.details.get("problems", [])
            continue
        plans.append(
            Plan(
                name=service.name,
                line=service.line,
                digest=service_digest(service),
                fields=spec_fields,
                depends_on=dict(service.depends_on),
                build=service.build,
            )
        )
    for service in project.services.values():
        for dep, condition in service.depends_on.items():
            target = project.services.get(dep)
            if condition == "service_healthy" and target is not None and _no_health_check(target):
                problems.append(
                    {
                        "where": f"services.{service.name}.depends_on.{dep}",
                        "line": service.line,
                        "message": f"service_healthy needs a healthcheck on {dep!r}",
                    }
                )
    if problems:
        raise refused(problems)
    return plans


def _no_health_check(service: Any) -> bool:
    hc = service.healthcheck
    return hc is None or hc.disabled or not hc.test


def _check_collisions(tenant: Tenant, plans: list[Plan], stack: Stack | None) -> None:
    """Conflict naming each service whose app name is an app outside the stack."""
    mine = set(StackService.objects.filter(stack=stack).values_list("app_id", flat=True)) if stack else set()
    taken = App.objects.filter(tenant=tenant, name__in=[p.name for p in plans]).exclude(pk__in=mine)
    clashes = sorted(taken.values_list("name", flat=True))
    if clashes:
        raise Conflict(
            "; ".join(
                f"service {n!r} would be app {n!r}, which {tenant.slug!r} already has outside this stack"
                for n in clashes
            )
            + ": rename the service or the app",
            {"services": clashes},
        )


def _spec(spec_fields: dict[str, Any]) -> deployments.AppSpec:
    known = {f.name for f in fields(deployments.AppSpec)}
    return deployments.AppSpec(**{k: v for k, v in spec_fields.items() if k in known})


def _stack_usage(stack: Stack | None) -> Usage:
    """What the stack's running apps count for now."""
    total = Usage()
    if stack is None:
        return total
    for service in stack.services.select_related("app__current_release"):
        app = service.app
        if app is not None and app.current_release is not None and app.state == App.State.RUNNING:
            total = _add(total, deployments.AppSpec.from_release(app.current_release).usage())
    return total


def _add(a: Usage, b: Usage, sign: int = 1) -> Usage:
    return Usage(**{f.name: getattr(a, f.name) + sign * getattr(b, f.name) for f in fields(Usage)})


def _check_quota(tenant: Tenant, plans: list[Plan], names: Names, stack: Stack | None) -> None:
    """The whole stack against the quota, before anything is made: every service running at once,
    and the volumes it will make."""

    before = deployments.tenant_usage(tenant)
    after = _add(before, _stack_usage(stack), -1)
    for p in plans:
        after = _add(after, _spec(p.fields).usage())
    have = set(
        Volume.objects.filter(tenant=tenant, name__in=names.own_volumes).values_list("name", flat=True)
    )
    new_volumes = [v for v in names.own_volumes if v not in have]
    after = _add(
        after,
        Usage(volumes=len(new_volumes), disk_bytes=len(new_volumes) * settings.HOSTPANEL_STACK_VOLUME_BYTES),
    )
    check_quota(tenant, before, after)


# ---- changes ------------------------------------------------------------------------
def create_stack(
    actor: Actor, tenant: Tenant, name: str, source: Source, env: dict[str, str] | None = None
) -> Stack:
    """Deploy a compose file as stack ``name``; nothing is made unless all of it can be."""
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "stack.create", tenant) as entry:
        name, env = _check_name(name), _check_env(env or {})
        if Stack.objects.filter(tenant=tenant, name=name).exists():
            raise Conflict(f"stack {name!r} exists already in {tenant.slug!r}; redeploy it with PUT")
        names, plans = _prepare(tenant, name, source, env, None)
        with transaction.atomic():
            stack = Stack.objects.create(
                tenant=tenant,
                name=name,
                source=source.text,
                source_kind=source.kind,
                git_url=source.git_url,
                git_file=source.git_file,
                project_dir=source.project_dir,
                env=env,
                deadline=timezone.now() + DEADLINE,
                created_by=_user(actor),
            )
            entry.obj = stack
            _make_resources(actor, stack, names)
            for p in plans:
                _add_service(actor, stack, p, source)
            transaction.on_commit(lambda: dispatch.send_advance(stack.pk))
    return stack


def redeploy_stack(
    actor: Actor, stack: Stack, source: Source | None = None, env: dict[str, str] | None = None
) -> Stack:
    """Apply a changed file (or env) in place: only services whose definition changed get a new
    release; services no longer in the file are removed; new ones are added."""
    tenant = stack.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "stack.redeploy", tenant, stack):
        env = _check_env(stack.env if env is None else env)
        fresh = source is None
        source = sources.stored(stack) if source is None else source
        try:
            return _redeploy(actor, stack, source, env)
        except BaseException:
            if fresh and source.project_dir != stack.project_dir:  # a git stack's new checkout
                sources.forget_project_dir(tenant, source.project_dir)
            raise


def _redeploy(actor: Actor, stack: Stack, source: Source, env: dict[str, str]) -> Stack:
    tenant = stack.tenant
    names, plans = _prepare(tenant, stack.name, source, env, stack)
    with transaction.atomic():
        stack = Stack.objects.select_for_update(of=("self",)).get(pk=stack.pk)
        existing = {s.name: s for s in stack.services.select_related("app__current_release")}
        wanted = {p.name for p in plans}
        for gone in sorted(set(existing) - wanted):
            _remove_service(actor, existing[gone])
        _make_resources(actor, stack, names)
        for p in plans:
            current = existing.get(p.name)
            if current is None:
                _add_service(actor, stack, p, source)
            else:
                _update_service(actor, current, p, source)
        stack.source, stack.source_kind, stack.env = source.text, source.kind, env
        stack.git_url, stack.git_file = source.git_url, source.git_file
        if stack.project_dir != source.project_dir:
            old = stack.project_dir
            transaction.on_commit(lambda: sources.forget_project_dir(tenant, old))
        stack.project_dir = source.project_dir
        stack.status, stack.message = Stack.Status.DEPLOYING, ""
        stack.deadline = timezone.now() + DEADLINE
        stack.save()
        transaction.on_commit(lambda: dispatch.send_advance(stack.pk))
    return stack


def down_stack(actor: Actor, stack: Stack, *, volumes: bool = False) -> None:
    """Remove every app and network the stack made, and its volumes only if ``volumes``."""

    tenant = stack.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "stack.down", tenant, stack), transaction.atomic():
        for service in stack.services.select_related("app"):
            _remove_service(actor, service)
        for res in stack.resources.filter(kind=StackResource.Kind.NETWORK):
            network = Network.objects.filter(tenant=tenant, name=res.name).first()
            if network is not None:
                delete_network(actor, network)
        if volumes:
            for res in stack.resources.filter(kind=StackResource.Kind.VOLUME):
                volume = Volume.objects.filter(tenant=tenant, name=res.name).first()
                if volume is not None:
                    delete_volume(actor, volume)
        project_dir = stack.project_dir
        stack.delete()
        transaction.on_commit(lambda: sources.forget_project_dir(tenant, project_dir))


def _prepare(
    tenant: Tenant, name: str, source: Source, env: dict[str, str], stack: Stack | None
) -> tuple[Names, list[Plan]]:
    """Everything checked before anything is made: the file, what the panel can run of it, names
    taken outside the stack, the quota for the whole stack."""
    project = load(name, source, env)
    names = names_of(name, project)
    plans = plan(tenant, name, project, names)
    _check_builds_possible(source, plans)
    _check_collisions(tenant, plans, stack)
    _check_quota(tenant, plans, names, stack)
    return names, plans


def _user(actor: Actor) -> Any:
    return actor.user if actor.user is not None and getattr(actor.user, "pk", None) else None


def _check_builds_possible(source: Source, plans: list[Plan]) -> None:
    needs = [p for p in plans if p.build is not None]
    if needs and source.base_dir is None:
        raise refused(
            [
                {
                    "where": f"services.{p.name}.build",
                    "line": p.line,
                    "message": "a pasted file has no build context: upload the project or take it from git",
                }
                for p in needs
            ]
        )


def _make_resources(actor: Actor, stack: Stack, names: Names) -> None:
    """The stack's own networks (made) and volumes (made, or kept from before)."""

    tenant = stack.tenant
    for name in names.own_networks:
        if not stack.resources.filter(kind=StackResource.Kind.NETWORK, name=name).exists():
            if Network.objects.filter(tenant=tenant, name=name).exists():
                raise Conflict(
                    f"network {name!r} exists already outside stack {stack.name!r}", {"networks": [name]}
                )
            create_network(actor, tenant, name)
            StackResource.objects.create(stack=stack, kind=StackResource.Kind.NETWORK, name=name)
    for name in names.own_volumes:
        if not Volume.objects.filter(tenant=tenant, name=name).exists():
            create_volume(
                actor,
                tenant,
                name,
                settings.HOSTPANEL_STACK_VOLUME_BYTES,
                {"com.docker.compose.project": stack.name},
            )
        StackResource.objects.get_or_create(stack=stack, kind=StackResource.Kind.VOLUME, name=name)


def _named(p: Plan, exc: ServiceError) -> ServiceError:
    """``exc`` with the service and its line named (same kind, same status)."""
    where = f"line {p.line}: services.{p.name}" if p.line else f"services.{p.name}"
    return type(exc)(f"{where}: {exc.message}", {**exc.details, "service": p.name, "line": p.line})


def _add_service(actor: Actor, stack: Stack, p: Plan, source: Source) -> StackService:
    service = StackService(stack=stack, name=p.name, digest=p.digest, depends_on=p.depends_on)
    if p.build is not None:
        service.state, service.spec = StackService.State.BUILDING, p.fields
        service.save()
        transaction.on_commit(lambda: _start_build(actor, service.pk, p, source))
        return service
    waits = bool(p.depends_on)
    try:
        service.app = deployments.create_app(actor, stack.tenant, p.name, _spec(p.fields), running=not waits)
    except ServiceError as exc:
        raise _named(p, exc) from None
    service.state = StackService.State.WAITING if waits else StackService.State.STARTED
    service.save()
    return service


def _update_service(actor: Actor, service: StackService, p: Plan, source: Source) -> None:
    app = service.app
    service.depends_on = p.depends_on
    if p.build is not None and (p.digest != service.digest or app is None):
        service.digest, service.spec, service.state = p.digest, p.fields, StackService.State.BUILDING
        service.save()
        transaction.on_commit(lambda: _start_build(actor, service.pk, p, source))
        return
    if app is None and p.build is None:  # its app was deleted by hand: made anew
        stack = service.stack
        service.delete()
        _add_service(actor, stack, p, source)
        return
    if app is None:  # still waiting for its build: it is made from the new spec
        service.digest, service.spec = p.digest, p.fields
        service.save()
        return
    if service.state == StackService.State.FAILED:  # a redeploy gives it another chance
        running = app.state == App.State.RUNNING
        service.state = StackService.State.STARTED if running else StackService.State.WAITING
        service.message = ""
    spec = _spec(p.fields)
    current = deployments.AppSpec.from_release(app.current_release) if app.current_release else None
    try:
        if p.digest != service.digest:
            deployments.deploy(actor, app, note="stack redeploy", **_fields_of(spec))
        elif current is not None and current.replicas != spec.replicas:
            deployments.scale(actor, app, spec.replicas)
    except ServiceError as exc:
        raise _named(p, exc) from None
    service.digest = p.digest
    service.save()


def _fields_of(spec: deployments.AppSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in fields(spec)}


def _remove_service(actor: Actor, service: StackService) -> None:
    if service.app is not None:
        deployments.delete_app(actor, service.app)
    service.delete()


def _start_build(actor: Actor, service_id: int, p: Plan, source: Source) -> None:
    """Queue the service's build (after the stack's transaction) from its context directory in the
    project (upload or git; the parser keeps it inside); a refusal fails the service."""

    service = StackService.objects.select_related("stack__tenant").get(pk=service_id)
    stack, build = service.stack, p.build
    try:
        built = start_build(
            actor,
            stack.tenant,
            name=f"{stack.name}-{service.name}:latest",
            context=sources.context_tar(Path(build.context)),
            dockerfile=build.dockerfile,
            build_args=dict(build.args),
            target=build.target or "",
        )
    except ServiceError as exc:
        service.state, service.message = StackService.State.FAILED, f"build refused: {exc.message}"
        service.save(update_fields=["state", "message"])
        return
    service.build = built
    service.save(update_fields=["build"])


# ---- advancing: builds and dependencies -------------------------------------------------
def advance(stack_id: int) -> bool:
    """Start the services whose builds finished and whose dependencies meet their conditions;
    True while some still wait. Idempotent (the stack row is locked)."""
    with transaction.atomic():
        stack = (
            Stack.objects.select_for_update(of=("self",))  # PostgreSQL: created_by is an outer join
            .select_related("tenant", "created_by")
            .filter(pk=stack_id)
            .first()
        )
        if stack is None or stack.status != Stack.Status.DEPLOYING:
            return False
        actor = Actor(user=stack.created_by)
        services = {s.name: s for s in stack.services.select_related("app", "build")}
        try:
            for service in services.values():
                _advance_one(actor, stack, service, services)
        except ServiceError as exc:
            _fail(stack, exc.message)
            return False
        failed = [s for s in services.values() if s.state == StackService.State.FAILED]
        waiting = [s for s in services.values() if s.state != StackService.State.STARTED]
        if failed:
            _fail(stack, "; ".join(f"service {s.name!r}: {s.message}" for s in failed))
        elif not waiting:
            stack.status, stack.message = Stack.Status.RUNNING, ""
            stack.save(update_fields=["status", "message", "updated_at"])
        elif stack.deadline is not None and timezone.now() > stack.deadline:
            _fail(stack, "timed out waiting for: " + ", ".join(f"{s.name} ({s.message})" for s in waiting))
        else:
            return True
        return False


def advance_on_host_checks(**_: Any) -> None:
    """``hosts.signals.checked``: the periodic host checks ran (``manage.py watchhosts`` on the
    panel): advance every deploying stack."""
    advance_all()


def advance_all() -> int:
    """Advance every deploying stack (the periodic host checks); how many still wait."""
    still = 0
    for stack_id in Stack.objects.filter(status=Stack.Status.DEPLOYING).values_list("pk", flat=True):
        try:
            still += advance(stack_id)
        except Exception:  # one stack's trouble never stops the others
            log.exception("advancing stack %s failed; retried on the next pass", stack_id)
    return still


def _fail(stack: Stack, message: str) -> None:
    stack.status, stack.message = Stack.Status.FAILED, message[:2000]
    stack.save(update_fields=["status", "message", "updated_at"])


def _advance_one(
    actor: Actor, stack: Stack, service: StackService, services: dict[str, StackService]
) -> None:
    if service.state == StackService.State.BUILDING:
        _after_build(actor, stack, service)
    if service.state != StackService.State.WAITING or service.app is None:
        return
    unmet = []
    for dep, condition in service.depends_on.items():
        verdict = condition_state(services.get(dep), condition)
        if verdict == "failed":
            service.state, service.message = StackService.State.FAILED, f"{dep} did not meet {condition}"
            service.save(update_fields=["state", "message"])
            return
        if verdict != "met":
            unmet.append(f"{dep} {condition}")
    if unmet:
        message = "waiting for " + ", ".join(unmet)
        if service.message != message:
            service.message = message
            service.save(update_fields=["message"])
        return
    deployments.set_state(actor, service.app, App.State.RUNNING)
    service.state, service.message = StackService.State.STARTED, ""
    service.save(update_fields=["state", "message"])


def _after_build(actor: Actor, stack: Stack, service: StackService) -> None:

    build = service.build
    if build is None or build.status in (Build.Status.QUEUED, Build.Status.RUNNING):
        service.message = "building"
        return
    if build.status == Build.Status.FAILED:
        service.state, service.message = StackService.State.FAILED, f"build failed: {build.error}"[:2000]
        service.save(update_fields=["state", "message"])
        return
    spec = _spec(dict(service.spec) | {"image": build.reference})
    waits = bool(service.depends_on)
    if service.app is None:
        service.app = deployments.create_app(actor, stack.tenant, service.name, spec, running=not waits)
    else:
        deployments.deploy(actor, service.app, note="stack redeploy (built)", **_fields_of(spec))
    service.state = (
        StackService.State.WAITING
        if waits and service.app.state != App.State.RUNNING
        else StackService.State.STARTED
    )
    service.save(update_fields=["app", "state"])


def condition_state(dep: StackService | None, condition: str) -> str:
    """``met``, ``unmet`` or ``failed``: whether service ``dep`` meets a depends_on ``condition``."""
    if dep is None:
        return "met"  # removed from the file meanwhile: nothing to wait for
    if dep.state == StackService.State.FAILED:
        return "failed"
    if dep.state != StackService.State.STARTED or dep.app is None:
        return "unmet"
    replicas = list(Replica.objects.filter(app=dep.app))
    if condition == "service_completed_successfully":
        if any(
            r.state in (Replica.State.EXITED, Replica.State.FAILED) and r.exit_code != 0 for r in replicas
        ):
            return "failed"
        done = all(r.state == Replica.State.EXITED and r.exit_code == 0 for r in replicas)
        return "met" if done else "unmet"
    if condition == "service_healthy":
        healthy = all(r.state == Replica.State.RUNNING and r.health == "healthy" for r in replicas)
        return "met" if healthy else "unmet"
    started = all(r.started_at is not None for r in replicas)
    return "met" if started else "unmet"
