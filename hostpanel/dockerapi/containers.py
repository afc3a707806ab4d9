"""``/containers/...`` for tenants: each Docker container is an app of the tenant (replicas=1).

Every write goes through the deployments services (quota, scheduler, audit log); reads look
only inside the identity's tenant, so another tenant's container is ``No such container``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from engine.dockerapi.filters import request_filters
from engine.dockerapi.http import (
    APIError,
    Request,
    Response,
    Router,
    Stream,
    json_response,
    no_content,
)
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.dockerapi import attach, logs, translate
from hostpanel.dockerapi import create as creating
from hostpanel.dockerapi.imagenames import find_image
from hostpanel.dockerapi.lookup import client_gone, find, identity_of, replica_of
from hostpanel.dockerapi.models import DockerContainer
from hostpanel.errors import Conflict, Forbidden, NoCapacity, NotFound, QuotaExceeded, ServiceError
from hostpanel.tenants.models import Role, Tenant

SETTLED = (Replica.State.RUNNING, Replica.State.EXITED, Replica.State.BACKOFF, Replica.State.FAILED)
DOWN = (Replica.State.STOPPED, Replica.State.EXITED, Replica.State.FAILED)


# ---- errors and lookups -----------------------------------------------------------------
def api_error(exc: ServiceError) -> APIError:
    """A service's refusal as a Docker error (the CLI prints "Error response from daemon: <message>")."""
    if isinstance(exc, NotFound):
        return APIError(404, exc.message)
    if isinstance(exc, Forbidden | QuotaExceeded):
        return APIError(403, exc.message)
    if isinstance(exc, Conflict):
        return APIError(409, exc.message)
    if isinstance(exc, NoCapacity):
        return APIError(503, exc.message)
    return APIError(exc.status if 400 <= exc.status < 500 else 500, exc.message)


def translated(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """``handler`` with service errors answered as Docker errors."""

    def run(request: Request) -> Any:
        try:
            return handler(request)
        except ServiceError as exc:
            raise api_error(exc) from None

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def state_now(app: App, replica: Replica | None) -> translate.ContainerState:
    """Docker's state of the app's container, from the rows the agent reports to."""
    return translate.state_of(
        app_running=app.state == App.State.RUNNING,
        replica_state=replica.state if replica else None,
        exit_code=replica.exit_code if replica else None,
        started_at=replica.started_at if replica else None,
        finished_at=replica.finished_at if replica else None,
        message=replica.message if replica else "",
    )


def view_of(container: DockerContainer, replica: Replica | None) -> translate.ContainerView:
    app = container.app
    release = app.current_release
    state = state_now(app, replica)
    return translate.ContainerView(
        id=container.docker_id,
        name=container.name,
        image=release.image if release else "",
        command=list(release.command) if release else [],
        created=container.created_at,
        state=state,
        config=container.config,
        restart_policy=release.restart_policy_text if release else "no",
        restart_count=replica.restart_count if replica else 0,
        memory_bytes=release.memory_bytes if release else 0,
        cpu_millis=release.cpu_millis if release else 0,
        pids=release.pids if release else 0,
        network=release.network if release else "none",
        ports=list(replica.ports) if replica and replica.ports else [],
        volumes=list(release.volumes) if release else [],
        host=replica.host.name if replica and replica.host else "",
    )


def wait_until(
    container: DockerContainer,
    done: Callable[[App, Replica | None], bool],
    timeout: float,
    gone: Callable[[], bool] = lambda: False,
) -> Replica | None:
    """Poll the replica until ``done`` (the agent reports through the database), at most ``timeout``
    seconds or until ``gone`` (the client left); every 0.2 s for 10 s, then every second."""
    start = time.monotonic()
    while True:
        app = App.objects.filter(pk=container.app_id).first()
        replica = replica_of(container)
        waited = time.monotonic() - start
        if app is None or done(app, replica) or waited >= timeout or gone():
            return replica
        time.sleep(0.2 if waited < 10 else 1.0)


# ---- handlers ---------------------------------------------------------------------------
def register(router: Router) -> None:
    """Add the container endpoints of the tenants' door to ``router``."""
    routes: list[tuple[str, str, Callable[[Request], Any]]] = [
        ("GET", "/containers/json", list_containers),
        ("POST", "/containers/create", create_container),
        ("GET", "/containers/{id}/json", inspect_container),
        ("POST", "/containers/{id}/start", start_container),
        ("POST", "/containers/{id}/stop", stop_container),
        ("POST", "/containers/{id}/kill", kill_container),
        ("POST", "/containers/{id}/restart", restart_container),
        ("POST", "/containers/{id}/wait", wait_container),
        ("POST", "/containers/{id}/attach", attach.attach_container),
        ("GET", "/containers/{id}/logs", logs.container_logs),
        ("DELETE", "/containers/{id}", remove_container),
    ]
    for method, pattern, handler in routes:
        router.add(method, pattern, translated(handler))


def container_items(tenant: Tenant, filters: dict[str, list[str]], *, show_all: bool) -> list[dict[str, Any]]:
    """The tenant's containers as ``GET /containers/json`` lists them (newest first)."""
    now = timezone.now()
    items = []
    rows = DockerContainer.objects.filter(tenant=tenant).select_related("app", "app__current_release")
    replicas = {
        r.app_id: r
        for r in Replica.objects.filter(app__docker__tenant=tenant).select_related("host").order_by("-index")
    }
    for container in rows.order_by("-created_at"):
        view = view_of(container, replicas.get(container.app_id))
        if not show_all and "status" not in filters and not view.state.running:
            continue
        if translate.matches_filters(view, filters):
            items.append(translate.list_item(view, now))
    return items


def list_containers(request: Request) -> Response:
    """``GET /containers/json``: the tenant's containers (``all``, ``filters``, ``limit``)."""
    identity = identity_of(request)
    filters = request_filters(request, translate.LIST_FILTERS)
    items = container_items(identity.tenant, filters, show_all=request.flag("all"))
    limit = request.int_arg("limit")
    if limit is not None and limit > 0:
        items = items[:limit]
    return json_response(items)


def inspect_container(request: Request) -> Response:
    """``GET /containers/{id}/json``."""
    container = find(identity_of(request), request.params["id"])
    return json_response(translate.inspect_document(view_of(container, replica_of(container))))


def create_container(request: Request) -> Response:
    """``POST /containers/create?name=``: a new app (replicas=1) of the tenant, placed but not started."""
    identity = identity_of(request)
    identity.require(Role.DEVELOPER, "creating a container", "app.create")
    body = request.json()
    name = request.arg("name").lstrip("/")
    if name and not translate.DOCKER_NAME_RE.match(name):
        raise APIError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    docker_id = secrets.token_hex(32)
    name = name or f"c-{docker_id[:12]}"
    app_name = translate.app_name_for(name)
    if app_name is None:
        raise APIError(
            400, f"container name {name!r}: use at most 40 letters, digits and '-' (the panel's app names)"
        )
    taken = DockerContainer.objects.filter(tenant=identity.tenant, name=name).first()
    if taken is not None:
        raise APIError(
            409,
            f'Conflict. The container name "/{name}" is already in use by container "{taken.docker_id}".'
            " You have to remove (or rename) that container to be able to reuse that name.",
        )
    try:
        translated_body = creating.parse(body)
    except APIError as exc:
        if exc.status == 403:  # a hostile or unsafe body: on record, like any refused write
            identity.denied("app.create", f"docker create {name!r}: {exc.message}")
        raise
    # the image as the tenant names it (own <slug>/<name> first): another tenant's is No such image
    image = find_image(identity.tenant, translated_body.spec.image).reference
    translated_body = replace(translated_body, spec=replace(translated_body.spec, image=image))
    # the service's own transaction, inside its audit block (a refusal stays on record)
    app = deployments.create_app(
        identity.actor, identity.tenant, app_name, translated_body.spec, running=False
    )
    try:
        DockerContainer.objects.create(
            app=app, tenant=identity.tenant, docker_id=docker_id, name=name, config=translated_body.shown
        )
    except IntegrityError:  # the same name, created a moment ago by another request
        deployments.delete_app(identity.actor, app)
        raise APIError(409, f'Conflict. The container name "/{name}" is already in use.') from None
    return json_response({"Id": docker_id, "Warnings": translated_body.warnings}, 201)


def start_container(request: Request) -> Response:
    """``POST /containers/{id}/start``: run it (quota checked), and wait until its host reports."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    identity.require(Role.DEVELOPER, "starting a container", "app.start", container.app)
    app = container.app
    replica = replica_of(container)
    if app.state == App.State.STOPPED:
        deployments.set_state(identity.actor, app, App.State.RUNNING)
    elif replica is not None and replica.state in (Replica.State.EXITED, Replica.State.FAILED):
        deployments.container_action(identity.actor, replica, "restart")
    else:
        return no_content(304)
    before = replica.updated_at if replica else None
    started_before = replica.started_at if replica else None

    def started(app: App, r: Replica | None) -> bool:
        """A new run began (its start time changed), or the engine refused to run it."""
        if r is None:
            return False
        if r.state == Replica.State.FAILED:
            return before is None or r.updated_at > before
        return r.state in SETTLED and r.started_at is not None and r.started_at != started_before

    replica = wait_until(container, started, settings.HOSTPANEL_DOCKER_API_WAIT_SECONDS)
    if replica is None and not App.objects.filter(pk=app.pk).exists():
        # `docker run --rm`: the client's wait (condition=removed) removed it once it had run and
        # exited, which a quick command does between two polls here: it did start
        return no_content()
    if replica is not None and replica.state == Replica.State.FAILED:
        raise APIError(500, f"failed to start container {container.name}: {replica.message}")
    if replica is None or replica.state not in SETTLED:
        why = (
            replica.message if replica is not None and replica.message else "no host reported it running yet"
        )
        raise APIError(503, f"container {container.name} is not running yet: {why}; see docker inspect")
    return no_content()


def _stop(request: Request, what: str) -> Response:
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    identity.require(Role.DEVELOPER, f"{what} a container", "app.stop", container.app)
    app = container.app
    if app.state == App.State.STOPPED:
        if what == "killing":
            raise APIError(409, f"Container {container.docker_id} is not running")
        return no_content(304)
    replica = replica_of(container)
    if what == "killing" and (replica is None or replica.state != Replica.State.RUNNING):
        raise APIError(409, f"Container {container.docker_id} is not running")
    deployments.set_state(identity.actor, app, App.State.STOPPED)
    wait_until(
        container,
        lambda a, r: r is None or r.host_id is None or r.state in DOWN,
        settings.HOSTPANEL_DOCKER_API_WAIT_SECONDS,
    )
    return no_content()


def stop_container(request: Request) -> Response:
    """``POST /containers/{id}/stop`` (the engine's stop: SIGTERM, then SIGKILL after its timeout)."""
    return _stop(request, "stopping")


def kill_container(request: Request) -> Response:
    """``POST /containers/{id}/kill``: stopped as by ``stop`` (the container stays stopped)."""
    return _stop(request, "killing")


def restart_container(request: Request) -> Response:
    """``POST /containers/{id}/restart``."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    identity.require(Role.DEVELOPER, "restarting a container", "app.restart", container.app)
    app = container.app
    if app.state == App.State.STOPPED:
        return start_container(request)
    app = deployments.restart(identity.actor, app)
    generation = app.restart_generation
    wait_until(
        container,
        lambda a, r: r is not None and r.restart_generation >= generation and r.state in SETTLED,
        settings.HOSTPANEL_DOCKER_API_WAIT_SECONDS,
    )
    return no_content()


def wait_container(request: Request) -> Stream:
    """``POST /containers/{id}/wait?condition=not-running|next-exit|removed``: its exit code once it
    stops (``removed``: once it is removed; one created with ``--rm`` is removed here when it exits)."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    condition = request.arg("condition", "not-running")
    if condition not in ("not-running", "next-exit", "removed"):
        raise APIError(400, f"invalid condition {condition!r}: use not-running, next-exit or removed")
    first = replica_of(container)
    first_finish = first.finished_at if first else None
    auto_remove = bool(container.config.get("AutoRemove"))

    def exited(app: App, replica: Replica | None) -> bool:
        if replica is None:
            return False
        state = state_now(app, replica)
        return not state.running and not (state.status == "created" and app.state == App.State.RUNNING)

    def done(app: App, replica: Replica | None) -> bool:
        if condition == "removed":
            return (
                auto_remove
                and exited(app, replica)
                and replica is not None
                and replica.finished_at is not None
            )
        if not exited(app, replica):
            return False
        return condition == "not-running" or (replica is not None and replica.finished_at != first_finish)

    def gone() -> bool:
        return client_gone(request.connection)

    def answer() -> Iterator[bytes]:
        while True:
            replica = wait_until(container, done, 3600, gone)
            if gone():
                return  # `docker run -d` leaves its wait behind: no thread polls for it
            app = App.objects.filter(pk=container.app_id).first()
            if app is not None and not done(app, replica):
                continue
            code = (replica.exit_code or 0) if replica else 0
            if app is not None and condition == "removed":  # --rm: the daemon's part, done here
                try:
                    deployments.delete_app(identity.actor, app)
                except ServiceError:
                    continue  # a viewer's wait removes nothing: wait on for someone else's rm
            yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"
            return

    # the headers go out at once: `docker run` waits for them before it starts the container
    return Stream(answer())


def remove_container(request: Request) -> Response:
    """``DELETE /containers/{id}?force=``: delete the app (its host removes the container)."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    identity.require(Role.DEVELOPER, "removing a container", "app.delete", container.app)
    view = view_of(container, replica_of(container))
    if container.app.state == App.State.RUNNING and view.state.running and not request.flag("force"):
        raise APIError(
            409,
            f"You cannot remove a running container {container.docker_id}."
            " Stop the container before attempting removal or force remove",
        )
    deployments.delete_app(identity.actor, container.app)
    return no_content()
