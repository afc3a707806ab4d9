"""Business rules of deployments: apps, releases, replicas, quotas on every change.

Every change to an app's spec makes a new :class:`Release`; the app's replicas
follow the current release. Changes are checked against the tenant's quota
and the hosts' room (scheduler) inside one transaction, and the hosts involved
are told to reconcile once it commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet

from engine.errors import InvalidSpec
from engine.volumes.spec import validate_volume_target
from hostpanel.audit.services import Actor, audited
from hostpanel.deployments import process, rollout, rotation
from hostpanel.deployments.health import validate_health_check
from hostpanel.deployments.models import (
    NETWORKS,
    RESTART_POLICY_RE,
    App,
    Release,
    Replica,
    RestartPolicy,
    container_name,
)
from hostpanel.deployments.placement import allocate_ports, free_room, place_replicas
from hostpanel.errors import Conflict, InvalidRequest, NotFound
from hostpanel.hosts import dispatch
from hostpanel.hosts.services import reconcile_hosts
from hostpanel.images.services import check_available
from hostpanel.networks.services import joined_names, normalize_joins, resolve_names
from hostpanel.secrets.models import Secret
from hostpanel.tenants.access import require_role
from hostpanel.tenants.locks import lock_tenant
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import Usage, check_quota
from hostpanel.volumes.models import Volume
from hostpanel.volumes.services import volume_usage

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VOLUME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_RESTART_RE = re.compile(RESTART_POLICY_RE)
MAX_REPLICAS = 100


@dataclass(frozen=True)
class AppSpec:
    """What a release says; the API's fields, checked by :func:`validate_spec`."""

    image: str
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[dict[str, Any]] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    network: str = "none"
    volumes: list[dict[str, Any]] = field(default_factory=list)
    # tenant networks: [{"name": ..., "aliases": [...]}] (names accepted; see networks.services);
    # [] here (the Docker API's containers); the panel's API and pages default to the "default" one
    networks: list[dict[str, Any]] = field(default_factory=list)
    replicas: int = 1
    cpu_millis: int = 250
    memory_bytes: int = 128 * 1024**2
    pids: int = 128
    restart_policy: str = "always"
    health_check: dict[str, Any] | None = None
    http_port: int | None = None
    # how the process runs (hostpanel/deployments/process.py; models.PROCESS_DEFAULTS)
    entrypoint: list[str] | None = None
    user: str = ""
    working_dir: str = ""
    stop_signal: str = ""
    stop_grace_seconds: int = 10
    init: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    tmpfs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_release(cls, release: Release) -> AppSpec:
        return cls(
            image=release.image,
            command=list(release.command),
            env=dict(release.env),
            secrets=list(release.secrets),
            ports=list(release.ports),
            network=release.network,
            volumes=list(release.volumes),
            networks=list(release.networks),
            replicas=release.replicas,
            cpu_millis=release.cpu_millis,
            memory_bytes=release.memory_bytes,
            pids=release.pids,
            restart_policy=release.restart_policy_text,
            health_check=release.health_check,
            http_port=release.http_port,
            entrypoint=None if release.entrypoint is None else list(release.entrypoint),
            user=release.user,
            working_dir=release.working_dir,
            stop_signal=release.stop_signal,
            stop_grace_seconds=release.stop_grace_seconds,
            init=release.init,
            labels=dict(release.labels),
            tmpfs=list(release.tmpfs),
        )

    def changed(self, **changes: Any) -> AppSpec:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
        return replace(self, **changes)

    def usage(self, replicas: int | None = None) -> Usage:
        n = self.replicas if replicas is None else replicas
        return Usage(
            cpu_millis=n * self.cpu_millis,
            memory_bytes=n * self.memory_bytes,
            pids=n * self.pids,
            containers=n,
        )


def parse_restart_policy(text: str) -> tuple[str, int | None]:
    """``no``, ``always``, ``unless-stopped``, ``on-failure`` or ``on-failure:N``."""
    m = _RESTART_RE.match(text)
    if not m:
        raise InvalidRequest(
            f"invalid restart policy {text!r}: use no, on-failure[:N] (N to 999999), always or unless-stopped"
        )
    return m.group(1).partition(":")[0], int(m.group(2)) if m.group(2) is not None else None


def validate_spec(tenant: Tenant, spec: AppSpec) -> AppSpec:
    """``spec`` with its image normalized; InvalidRequest unless it is well-formed, uses only
    images and secrets the tenant has, and asks for nothing privileged."""

    if not spec.image or len(spec.image) > 255 or any(c.isspace() for c in spec.image):
        raise InvalidRequest("image: give an image reference such as busybox:latest")
    spec = replace(spec, image=check_available(tenant, spec.image))
    if spec.network not in NETWORKS:
        raise InvalidRequest(
            f"network: use one of {', '.join(NETWORKS)}; the host's network is not for tenants"
        )
    if spec.ports and spec.network != "bridge":
        spec = replace(spec, network="bridge")  # published ports need the tenant's network
    if not isinstance(spec.command, list) or not all(isinstance(a, str) for a in spec.command):
        raise InvalidRequest("command: give a list of strings")
    for key, value in spec.env.items():
        if not _ENV_NAME_RE.match(key) or not isinstance(value, str) or "\0" in value:
            raise InvalidRequest(f"env: invalid variable {key!r}")
    if not 0 <= spec.replicas <= MAX_REPLICAS:
        raise InvalidRequest(f"replicas: use 0 to {MAX_REPLICAS}")
    if spec.cpu_millis < 10 or spec.memory_bytes < 4 * 1024**2 or spec.pids < 1:
        raise InvalidRequest("resources: at least 10 millicores, 4 MiB of memory and 1 pid per replica")
    parse_restart_policy(spec.restart_policy)
    names = []
    for item in spec.secrets:
        if set(item) - {"name", "env"} or not isinstance(item.get("name"), str):
            raise InvalidRequest('secrets: give [{"name": ..., "env": optional variable name}]')
        env = item.get("env")
        if env is not None and not _ENV_NAME_RE.match(str(env)):
            raise InvalidRequest(f"secrets: invalid variable name {env!r}")
        names.append(item["name"])
    missing = sorted(
        set(names) - set(Secret.objects.filter(tenant=tenant, name__in=names).values_list("name", flat=True))
    )
    if missing:
        raise InvalidRequest(
            f"secrets: tenant {tenant.slug!r} has no secret(s) {', '.join(missing)}; create them first"
        )
    spec = _with_http_port_published(spec)
    for port in spec.ports:
        if set(port) - {"container_port", "protocol"}:
            unknown = sorted(set(port) - {"container_port", "protocol"})
            raise InvalidRequest(f"ports: unknown key(s) {unknown}; host ports are assigned by the panel")
        cp = port.get("container_port")
        if (
            not isinstance(cp, int)
            or not 1 <= cp <= 65535
            or port.get("protocol", "tcp") not in ("tcp", "udp")
        ):
            raise InvalidRequest('ports: give [{"container_port": 1-65535, "protocol": "tcp"|"udp"}]')

    wanted_volumes = {str(v.get("name")) for v in spec.volumes}
    known = set(Volume.objects.filter(tenant=tenant, name__in=wanted_volumes).values_list("name", flat=True))
    for vol in spec.volumes:
        if not {"name", "path"} <= set(vol) <= {"name", "path", "read_only"} or not isinstance(
            vol.get("read_only", False), bool
        ):
            raise InvalidRequest(
                'volumes: give [{"name": volume, "path": /abs/path, "read_only": optional bool}];'
                " host paths are not allowed"
            )
        if not _VOLUME_NAME_RE.match(str(vol["name"])):
            raise InvalidRequest(f"volumes: invalid volume name {vol['name']!r}")
        try:  # the engine's own rule, so a path accepted here is never refused on the host
            vol["path"] = validate_volume_target(str(vol["path"]))
        except InvalidSpec as exc:
            raise InvalidRequest(f"volumes: {exc}") from None
        if vol["name"] not in known:
            raise InvalidRequest(
                f"volumes: tenant {tenant.slug!r} has no volume {vol['name']!r}; create it first"
            )
    if spec.health_check is not None:
        validate_health_check(spec.health_check)
    spec = _with_process_checked(spec)
    # last: naming only networks the tenant has, it may make the tenant's default network
    spec = replace(spec, networks=normalize_joins(spec.networks))
    resolve_names(tenant, joined_names(spec.networks))
    return spec


def _with_process_checked(spec: AppSpec) -> AppSpec:
    """``spec`` with its process fields checked and normalized (process.py names the field)."""
    return replace(
        spec,
        entrypoint=process.check_entrypoint(spec.entrypoint),
        user=process.check_user(spec.user),
        working_dir=process.check_working_dir(spec.working_dir),
        stop_signal=process.check_stop_signal(spec.stop_signal),
        stop_grace_seconds=process.check_stop_grace(spec.stop_grace_seconds),
        init=bool(spec.init),
        labels=process.check_labels(spec.labels),
        tmpfs=process.check_tmpfs(spec.tmpfs, spec.memory_bytes, {str(v["path"]) for v in spec.volumes}),
    )


def _with_http_port_published(spec: AppSpec) -> AppSpec:
    """``spec`` with its ``http_port`` among its published TCP ports (the proxy reaches it there)."""
    port = spec.http_port
    if port is None:
        return spec
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidRequest("http_port: give the container port (1-65535) your app serves HTTP on")
    if any(p.get("container_port") == port and p.get("protocol", "tcp") == "tcp" for p in spec.ports):
        return replace(spec, network="bridge")
    return replace(spec, network="bridge", ports=[*spec.ports, {"container_port": port, "protocol": "tcp"}])


# ---- usage --------------------------------------------------------------------------
def tenant_usage(tenant: Tenant, *, exclude: App | None = None) -> Usage:
    """What the tenant's running apps ask for (stopped apps do not count), and its volumes."""

    total = volume_usage(tenant)  # volumes count whether or not an app mounts them
    apps = App.objects.filter(tenant=tenant, state=App.State.RUNNING).select_related("current_release")
    for app in apps:
        if (exclude is not None and app.pk == exclude.pk) or app.current_release is None:
            continue
        total = _add(total, AppSpec.from_release(app.current_release).usage())
    return total


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Usage)})


def _check_quota_for(app: App, spec: AppSpec | None, running: bool) -> None:
    """Quota check for ``app`` going to ``spec`` (or stopping), the tenant locked first (in the
    caller's transaction) so concurrent changes of one tenant never pass it together."""
    tenant = app.tenant
    lock_tenant(tenant)
    others = tenant_usage(tenant, exclude=app)
    before = tenant_usage(tenant)
    after = _add(others, spec.usage()) if running and spec is not None else others
    check_quota(tenant, before, after)


def check_room(actor: Actor, app: App, spec: AppSpec) -> AppSpec:
    """``spec`` validated for ``app`` and within the tenant's quota, changing nothing (a deploy's
    preview; the deploy checks again). InvalidRequest / QuotaExceeded say what is wrong."""
    require_role(actor, app.tenant, Role.DEVELOPER)
    spec = validate_spec(app.tenant, spec)
    with transaction.atomic():  # the quota check locks the tenant's row
        _check_quota_for(app, spec, running=app.state == App.State.RUNNING)
    return spec


# ---- queries ------------------------------------------------------------------------
def visible_apps(actor: Actor, tenant: Tenant) -> QuerySet[App]:
    require_role(actor, tenant, Role.VIEWER)
    return App.objects.filter(tenant=tenant).select_related("current_release", "tenant")


# ---- changes ------------------------------------------------------------------------
def create_app(actor: Actor, tenant: Tenant, name: str, spec: AppSpec, *, running: bool = True) -> App:
    """Create an app, its first release, and deploy it (``running=False``: placed but stopped,
    as ``docker create`` leaves a container until it is started)."""
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "app.create", tenant) as entry:
        spec = validate_spec(tenant, spec)
        state = App.State.RUNNING if running else App.State.STOPPED
        with transaction.atomic():
            try:
                app = App.objects.create(tenant=tenant, name=name, state=state)
            except IntegrityError as exc:
                raise Conflict(f"app {name!r} exists already in {tenant.slug!r}") from exc
            entry.obj = app
            _check_hostname_free(app, spec)
            _check_quota_for(app, spec, running=running)
            _new_release(actor, app, spec, note="created")
            _sync_replicas(app)
    return app


def deploy(actor: Actor, app: App, note: str = "", *, kind: str = "deploy", **changes: Any) -> Release:
    """Make a new release from the current one with ``changes`` and roll the replicas to it
    (audited as ``app.<kind>``: ``app.deploy``, ``app.scale``).

    An app serving HTTP rolls without downtime (rollout.py): the new release becomes
    current once its replicas are ready; until then (or if they never are) the previous
    one stays current and serving.
    """
    require_role(actor, app.tenant, Role.DEVELOPER)
    with audited(actor, f"app.{kind}", app.tenant, app):
        current = _current_spec(app)
        spec = validate_spec(app.tenant, current.changed(**changes))
        with transaction.atomic():
            app = App.objects.select_for_update().get(pk=app.pk)
            _check_hostname_free(app, spec)
            _check_quota_for(app, spec, running=app.state == App.State.RUNNING)
            release = _new_release(actor, app, spec, note=note or kind, current=False)
            _roll_or_sync(app, release, kind)
    return release


def scale(actor: Actor, app: App, replicas: int) -> Release:
    """Change the number of replicas (a new release; an app serving HTTP drains the ones it stops)."""
    return deploy(actor, app, note=f"scale to {replicas}", kind="scale", replicas=replicas)


def rollback(actor: Actor, app: App, version: int) -> Release:
    """A new release that copies release ``version``."""
    require_role(actor, app.tenant, Role.DEVELOPER)
    old = Release.objects.filter(app=app, version=version).first()
    if old is None:
        raise NotFound(f"app {app.name!r} has no release {version}")
    spec = AppSpec.from_release(old)
    with audited(actor, "app.rollback", app.tenant, app):
        spec = validate_spec(app.tenant, spec)
        with transaction.atomic():
            app = App.objects.select_for_update().get(pk=app.pk)
            _check_quota_for(app, spec, running=app.state == App.State.RUNNING)
            release = _new_release(actor, app, spec, note=f"rollback to v{version}", current=False)
            _roll_or_sync(app, release, "deploy")
    return release


def set_state(actor: Actor, app: App, state: str) -> App:
    """Stop or start every replica of the app."""
    require_role(actor, app.tenant, Role.DEVELOPER)
    action = f"app.{'start' if state == App.State.RUNNING else 'stop'}"
    with audited(actor, action, app.tenant, app), transaction.atomic():
        app = App.objects.select_for_update().select_related("tenant").get(pk=app.pk)
        if state == App.State.RUNNING and app.state != state:
            _check_quota_for(app, _current_spec(app), running=True)
        app.state = state
        app.save(update_fields=["state", "updated_at"])
        app.replicas.filter(stop_requested=True).update(stop_requested=False)  # the app's buttons win
        rollout.abandon(app, f"the app was {'started' if state == App.State.RUNNING else 'stopped'}")
        _sync_replicas(app)
        rotation.announce(app.pk)  # a stopped app leaves the edge's table now, not at the next reconcile
    return app


def restart(actor: Actor, app: App) -> App:
    """Restart every container of the app (a running app only)."""
    require_role(actor, app.tenant, Role.DEVELOPER)
    with audited(actor, "app.restart", app.tenant, app):
        if app.state != App.State.RUNNING:
            raise Conflict(f"app {app.name!r} is stopped; start it instead")
        with transaction.atomic():
            app = App.objects.select_for_update().select_related("tenant").get(pk=app.pk)
            current = app.current_release
            if current is not None and rollout.should_roll(app, current):
                rollout.begin(app, current, "restart")  # new containers take over, then the old stop
                return app
            app.restart_generation += 1
            app.save(update_fields=["restart_generation", "updated_at"])
            _sync_replicas(app)
    return app


def delete_app(actor: Actor, app: App) -> None:
    """Delete an app; the agents remove its containers."""

    require_role(actor, app.tenant, Role.DEVELOPER)
    app_id = app.pk
    with audited(actor, "app.delete", app.tenant, app), transaction.atomic():
        host_ids = set(app.replicas.exclude(host=None).values_list("host_id", flat=True))
        app.replicas.all().delete()
        App.objects.filter(pk=app.pk).update(current_release=None)
        app.delete()
        reconcile_hosts(host_ids)
        rotation.announce(app_id)  # its hostnames leave the edge's table at once


def hostname_label(app_name: str, tenant_slug: str) -> str:
    """The first label of an app's automatic hostname, ``<app>-<tenant>`` (domains/hostnames.py)."""
    return f"{app_name}-{tenant_slug}"


def _check_hostname_free(app: App, spec: AppSpec) -> None:
    """Conflict if another app already answers at the automatic hostname ``app`` would get.

    App names and tenant slugs may both hold '-', so tenant ``co`` app ``web-my`` and tenant
    ``my-co`` app ``web`` would share ``web-my-co``: the second is refused (the message names
    no one), so nobody's app ever answers at a name another tenant's dashboard shows.
    """
    if spec.http_port is None:
        return
    label = hostname_label(app.name, app.tenant.slug)
    for cut in (i for i, char in enumerate(label) if char == "-"):
        taken = (
            App.objects.filter(name=label[:cut], tenant__slug=label[cut + 1 :])
            .exclude(current_release__http_port=None)
            .exclude(pk=app.pk)
        )
        if taken.exists():
            raise Conflict(
                f"http_port: app {app.name!r} would answer at {label}.{settings.HOSTPANEL_APPS_DOMAIN},"
                " which another app already answers at; choose another app name"
            )


def _current_spec(app: App) -> AppSpec:
    if app.current_release is None:
        raise Conflict(f"app {app.name!r} has no release yet")
    return AppSpec.from_release(app.current_release)


def _roll_or_sync(app: App, release: Release, kind: str) -> None:
    """Move ``app`` (locked) to its new ``release``: a roll (rollout.py) or, for an app that does not
    serve HTTP or does not run, at once."""
    if rollout.should_roll(app, release):
        rollout.begin(app, release, kind)
        return
    rollout.abandon(app, f"superseded by v{release.version}")
    app.current_release = release
    app.save(update_fields=["current_release", "updated_at"])
    _sync_replicas(app)


def _new_release(actor: Actor, app: App, spec: AppSpec, note: str, current: bool = True) -> Release:
    policy, retries = parse_restart_policy(spec.restart_policy)
    version = (Release.objects.filter(app=app).aggregate(v=Max("version"))["v"] or 0) + 1
    user = actor.user if actor.user is not None and getattr(actor.user, "pk", None) else None
    release = Release.objects.create(
        app=app,
        version=version,
        image=spec.image,
        command=spec.command,
        env=spec.env,
        secrets=spec.secrets,
        ports=spec.ports,
        network=spec.network,
        volumes=spec.volumes,
        networks=spec.networks,
        replicas=spec.replicas,
        cpu_millis=spec.cpu_millis,
        memory_bytes=spec.memory_bytes,
        pids=spec.pids,
        restart_policy=RestartPolicy(policy),
        restart_max_retries=retries,
        health_check=spec.health_check,
        http_port=spec.http_port,
        entrypoint=spec.entrypoint,
        user=spec.user,
        working_dir=spec.working_dir,
        stop_signal=spec.stop_signal,
        stop_grace_seconds=spec.stop_grace_seconds,
        init=spec.init,
        labels=spec.labels,
        tmpfs=spec.tmpfs,
        note=note[:200],
        created_by=user,
    )
    if current:
        app.current_release = release
        app.save(update_fields=["current_release", "updated_at"])
    return release


def _sync_replicas(app: App) -> None:
    """Make the replica rows match the current release, place new ones, tell the hosts."""

    release = app.current_release
    assert release is not None
    # The lowest-numbered replicas stay (a roll leaves gaps in the numbers); new ones fill the gaps.
    existing = list(Replica.objects.filter(app=app).select_related("host").order_by("index"))
    touched: set[int] = {r.host_id for r in existing if r.host_id is not None}
    for extra in existing[release.replicas :]:
        extra.delete()
    replicas = {r.index: r for r in existing[: release.replicas]}
    free = (i for i in range(2 * release.replicas + len(existing) + 1) if i not in replicas)
    for _ in range(release.replicas - len(replicas)):
        index = next(free)
        replicas[index] = Replica.objects.create(
            app=app, index=index, release=release, container_name=container_name(app, index)
        )
    for replica in replicas.values():
        if replica.release_id != release.pk:
            replica.release = release
            replica.next_restart_at = None
            if replica.host is not None:
                replica.ports = allocate_ports(replica, replica.host)
            replica.save(update_fields=["release", "next_restart_at", "ports", "updated_at"])
    _unplace_where_overcommitted(app, list(replicas.values()))
    unplaced = [r for r in replicas.values() if r.host_id is None]
    if unplaced:
        place_replicas(app, unplaced, strict=True)
    touched |= {r.host_id for r in replicas.values() if r.host_id is not None}
    reconcile_hosts(touched)


def container_logs(actor: Actor, replica: Replica, tail: int) -> list[dict[str, Any]]:
    """The last ``tail`` lines of a replica's container, fetched from its host's agent."""

    require_role(actor, replica.app.tenant, Role.VIEWER)
    if replica.host is None:
        raise Conflict(f"container {replica.container_name} is not placed on a host: {replica.message}")
    return dispatch.fetch_logs(replica.pk, replica.host.queue, tail)


def container_stats(actor: Actor, replica: Replica) -> dict[str, Any]:
    """CPU, memory and pids of a replica's container now, from its host's agent."""

    require_role(actor, replica.app.tenant, Role.VIEWER)
    if replica.host is None:
        raise Conflict(f"container {replica.container_name} is not placed on a host: {replica.message}")
    return dispatch.fetch_stats(replica.pk, replica.host.queue)


# ---- one container (its page's buttons) ----------------------------------------------
CONTAINER_ACTIONS = ("stop", "start", "restart")


def container_action(actor: Actor, replica: Replica, action: str) -> Replica:
    """Stop, start or restart ONE container of a running app (audited as ``container.<action>``).

    A container stopped this way stays stopped (its restart policy does not
    apply) until started again here, or until the whole app is stopped or
    started. It still holds its share of the quota.
    """

    if action not in CONTAINER_ACTIONS:
        raise InvalidRequest(f"action: use one of {', '.join(CONTAINER_ACTIONS)}")
    app = replica.app
    require_role(actor, app.tenant, Role.DEVELOPER)
    with audited(actor, f"container.{action}", app.tenant, replica), transaction.atomic():
        replica = Replica.objects.select_for_update().select_related("app").get(pk=replica.pk)
        if replica.app.state != App.State.RUNNING:
            raise Conflict(f"app {app.name!r} is stopped; start the app first")
        if action == "restart" and replica.stop_requested:
            raise Conflict(f"container {replica.container_name} is stopped; start it instead")
        if action == "restart":
            replica.restart_requested = True
        else:
            replica.stop_requested = action == "stop"
        replica.save(update_fields=["stop_requested", "restart_requested", "updated_at"])
        reconcile_hosts([replica.host_id])
        rotation.announce(app.pk)  # a container asked to stop takes no new requests
    return replica


def _unplace_where_overcommitted(app: App, replicas: list[Replica]) -> None:
    """Take this app's replicas off hosts that its bigger release no longer fits on (to place anew)."""

    for room in free_room(app):
        mine = [r for r in replicas if r.host_id == room.host.pk]
        while mine and (room.cpu_millis < 0 or room.memory_bytes < 0):
            replica = mine.pop()
            room.cpu_millis += replica.release.cpu_millis
            room.memory_bytes += replica.release.memory_bytes
            replica.host, replica.ports = None, []
            replica.save(update_fields=["host", "ports", "updated_at"])


def delete_tenant_apps(sender: object, actor: Actor, tenant: Tenant, **kwargs: object) -> None:
    """tenants.signals.tenant_deleting (connected in DeploymentsConfig.ready): its apps go first."""
    for app in list(tenant.apps.all()):
        delete_app(actor, app)


RELEASE_LISTS = {"secret": "secrets", "volume": "volumes"}  # Release fields naming those resources


def resource_users(sender: str, name: str, tenant: Tenant | None, **kwargs: object) -> list[str]:
    """tenants.signals.resource_users (connected in DeploymentsConfig.ready): the apps whose current
    release uses the image, secret or volume ``name`` (of ``tenant``; of any tenant when None)."""
    apps = App.objects.exclude(current_release=None)
    if tenant is not None:
        apps = apps.filter(tenant=tenant)
    if sender == "image":
        return list(apps.filter(current_release__image=name).values_list("name", flat=True))
    field = RELEASE_LISTS[sender]
    return [
        app.name
        for app in apps.select_related("current_release")
        if any(used["name"] == name for used in getattr(app.current_release, field))
    ]
