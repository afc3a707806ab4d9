"""Business rules of builds: who may start and see them, where the context comes from, and their rows.

A developer starts a build with an uploaded context tar (or, where the admin
allows it, a directory or a git repository in the tenant's own directory
``<root>/<tenant slug>`` under one of ``HOSTPANEL_BUILD_CONTEXT_ROOTS``, the repository
cloned shallowly on the host), or with no context at all, and
optionally the Dockerfile's text instead of the context's Dockerfile. It runs on a
host that is up, through that host's agent (:mod:`hostpanel.agent.build_tasks`, which runs it with
:mod:`hostpanel.agent.build_runner`; this module keeps to the panel's side: rows, dispatch, claims),
in the tenant's own user namespace and quota, on the host's build workers (queue
``build.<host>``, never the agent's control worker), at most the tenant's fair share
of them at once (:func:`dispatch_builds`) and for at most the tenant's build time
limit (``Quota.build_time_limit``; past it the RUN is killed and the build fails).
Its output goes live to the log stream ``build/<id>`` and, bounded, into the Build
row. A successful build is recorded as the tenant's image ``<slug>/<name>:<tag>`` (exported like an upload,
so every host can import it). A build whose host goes down or whose agent
restarts while it runs ends as failed, with the reason (:func:`fail_host_builds`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from engine.build.dockerfile import parse_dockerfile
from engine.errors import InvalidSpec
from hostpanel.audit.services import Actor, audited
from hostpanel.builds import dispatch
from hostpanel.builds.contexts import check_context_path, check_git_url
from hostpanel.builds.models import Build
from hostpanel.builds.spec import STORED_LINES, BuildSpec
from hostpanel.errors import InvalidRequest, NoCapacity
from hostpanel.hosts.models import Host
from hostpanel.images import services as images
from hostpanel.images.models import Image
from hostpanel.logstream.publish import forget, publish_lines
from hostpanel.tenants.access import has_role, require_role
from hostpanel.tenants.limits import quota_limits
from hostpanel.tenants.models import Quota, Role, Tenant

log = logging.getLogger(__name__)
MAX_DOCKERFILE_CHARS = 256 * 1024
CHUNK = 1024 * 1024


def list_builds(actor: Actor, tenant: Tenant) -> QuerySet[Build]:
    require_role(actor, tenant, Role.VIEWER)
    return Build.objects.filter(tenant=tenant)


def _check_dockerfile_text(text: str) -> None:
    if len(text) > MAX_DOCKERFILE_CHARS or "\0" in text:
        raise InvalidRequest(
            f"dockerfile_text: give a text Dockerfile of at most {MAX_DOCKERFILE_CHARS} characters"
        )
    try:
        parse_dockerfile(text, "Dockerfile")
    except InvalidSpec as exc:
        raise InvalidRequest(f"dockerfile_text: {exc}") from None


def _check_options(name: str, dockerfile: str, build_args: dict[str, Any], target: str) -> None:
    images.check_image_name(name)
    parts = Path(dockerfile).parts
    if not dockerfile or dockerfile.startswith("/") or ".." in parts:
        raise InvalidRequest(
            "dockerfile: give a path inside the context, e.g. Dockerfile or docker/Dockerfile"
        )
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in build_args.items()):
        raise InvalidRequest('build_args: give an object of string values, e.g. {"VERSION": "1.2"}')
    if target and not target.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidRequest("target: give a stage name")


def _pick_host() -> Host:
    host = Host.objects.filter(state=Host.State.UP).order_by("-last_heartbeat", "name").first()
    if host is None:
        raise NoCapacity("no host is up to run the build; try again when a host agent is running")
    return host


def forget_tenant_contexts(slug: str) -> None:
    """Delete the uploaded build contexts of a (deleted) tenant."""
    shutil.rmtree(Path(settings.VAR_DIR) / "builds" / slug, ignore_errors=True)


def _store_context(tenant: Tenant, archive: IO[bytes]) -> Path:
    directory = Path(settings.VAR_DIR) / "builds" / tenant.slug
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="context-", suffix=".tar")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := archive.read(CHUNK):
                size += len(chunk)
                if size > settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES:
                    raise InvalidRequest(
                        f"context: larger than {settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES} bytes "
                        "(HOSTPANEL_BUILD_MAX_CONTEXT_BYTES); make the context smaller"
                    )
                out.write(chunk)
        if size == 0:
            raise InvalidRequest("context: the file is empty")
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def start_build(
    actor: Actor,
    tenant: Tenant,
    *,
    name: str,
    context: IO[bytes] | None = None,
    context_path: str = "",
    git_url: str = "",
    dockerfile: str = "Dockerfile",
    dockerfile_text: str = "",
    build_args: dict[str, Any] | None = None,
    target: str = "",
    no_cache: bool = False,
) -> Build:
    """Queue a build of ``<slug>/<name>`` on a host that is up (developers). The context is a tar
    upload, a directory or a git repository in the tenant's own ``<root>/<slug>/``, or none when
    ``dockerfile_text`` (used instead of the context's Dockerfile) is given. Raises InvalidRequest,
    NoCapacity, Forbidden."""
    require_role(actor, tenant, Role.DEVELOPER)
    build_args = dict(build_args or {})
    _check_options(name, dockerfile, build_args, target)
    contexts = sum((context is not None, bool(context_path), bool(git_url)))
    if contexts > 1 or (contexts == 0 and not dockerfile_text):
        raise InvalidRequest(
            "give one build context: context (a tar upload), context_path or git_url "
            "(or none with dockerfile_text), not both or neither"
        )
    if dockerfile_text:
        if dockerfile != "Dockerfile":
            raise InvalidRequest(
                "give either dockerfile (a path in the context) or dockerfile_text, not both"
            )
        _check_dockerfile_text(dockerfile_text)
    reference = images.normalize(f"{tenant.slug}/{name}")
    path = str(check_context_path(context_path, tenant)) if context_path else ""
    git_url = check_git_url(git_url, tenant) if git_url else ""
    host = _pick_host()
    with audited(actor, "build.start", tenant) as entry:
        archive = _store_context(tenant, context) if context is not None else None
        try:
            with transaction.atomic():
                build = Build.objects.create(
                    tenant=tenant,
                    created_by=actor.user if getattr(actor.user, "pk", None) else None,
                    name=name,
                    reference=reference,
                    dockerfile=dockerfile,
                    build_args=build_args,
                    target=target,
                    no_cache=no_cache,
                    context_archive=str(archive or ""),
                    context_path=path,
                    git_url=git_url,
                    dockerfile_text=dockerfile_text,
                    host=host,
                )
                transaction.on_commit(lambda: dispatch_builds(host))
        except BaseException:
            if archive is not None:
                archive.unlink(missing_ok=True)
            raise
        entry.obj = build
    return build


def tenant_build_slots() -> int:
    """How many builds of one tenant a host runs at once: ``HOSTPANEL_BUILD_TENANT_SLOTS``, by default
    half the host's build slots rounded up, and never all of them when there are two or more."""
    slots = max(1, int(settings.HOSTPANEL_BUILD_SLOTS))
    share = getattr(settings, "HOSTPANEL_BUILD_TENANT_SLOTS", None) or math.ceil(slots / 2)
    return max(1, min(int(share), slots - 1 if slots > 1 else 1))


def dispatch_builds(host: Host) -> list[int]:
    """Send ``host``'s waiting builds to its build queue, oldest first, while their tenant has fewer
    than :func:`tenant_build_slots` builds sent or running there; the others stay queued (with no
    ``dispatched_at``) until one of their tenant's builds ends. Returns the ids sent.

    Called when a build is started, when one ends, and on every heartbeat of the host's agent, with
    the database or without it (:func:`dispatch_on_heartbeat`), so a build held back for its
    tenant's share or by a Redis outage only waits. Dispatchers of one host are serialised by a write
    to its row first (a row lock on PostgreSQL, the write lock on SQLite)."""
    share = tenant_build_slots()
    sent: list[int] = []
    if not Build.objects.filter(host=host, status=Build.Status.QUEUED, dispatched_at=None).exists():
        return sent
    with transaction.atomic():
        Host.objects.filter(pk=host.pk).update(name=F("name"))
        active = Counter(
            Build.objects.filter(host=host)
            .filter(
                Q(status=Build.Status.RUNNING) | Q(status=Build.Status.QUEUED, dispatched_at__isnull=False)
            )
            .values_list("tenant_id", flat=True)
        )
        waiting = Build.objects.filter(host=host, status=Build.Status.QUEUED, dispatched_at=None)
        for pk, tenant_id in waiting.order_by("created_at", "id").values_list("pk", "tenant_id"):
            if active[tenant_id] >= share:
                continue
            if Build.objects.filter(pk=pk, status=Build.Status.QUEUED, dispatched_at=None).update(
                dispatched_at=timezone.now()
            ):
                active[tenant_id] += 1
                sent.append(pk)
        if sent:
            queue = host.build_queue
            transaction.on_commit(lambda: _send_builds(sent, queue))
    return sent


def _send_builds(ids: list[int], queue: str) -> None:
    """Send builds ``ids`` to ``queue``; those a broker outage kept from it are marked not sent
    again, so the next dispatch (the host's next heartbeat at the latest) sends them."""
    for done, pk in enumerate(ids):
        try:
            dispatch.send_build(pk, queue)
        except Exception:
            log.warning("builds %s: could not send them to %s; the next heartbeat does", ids[done:], queue)
            Build.objects.filter(pk__in=ids[done:], status=Build.Status.QUEUED).update(dispatched_at=None)
            return


def redispatch_host_builds(host: Host) -> list[int]:
    """On the agent's start: send the host's queued builds again (a message its dead build worker had
    taken is lost; one sent twice runs once, see :func:`claim_build`)."""
    Build.objects.filter(host=host, status=Build.Status.QUEUED).update(dispatched_at=None)
    return dispatch_builds(host)


def may_watch_build(user: Any, key: str) -> bool:
    """The live output of a build: viewers of its tenant (admins everywhere)."""
    if not key.isdigit():
        return False
    build = Build.objects.filter(pk=int(key)).select_related("tenant").first()
    if build is None:
        return False
    return has_role(Actor(user=user), build.tenant, Role.VIEWER)


def _publish(key: str, lines: list[dict[str, str]]) -> None:
    """The adapter to the log pipeline (kind "build", key = build id)."""

    publish_lines("build", key, lines)


def end_stream(key: str) -> None:
    """The stream of a finished build needs no counters any more (raises when Redis is down)."""

    forget("build", key)


def publish_quietly(key: str, lines: list[dict[str, str]]) -> None:
    """Send ``lines`` to the live stream of build ``key``; Redis down: the row keeps them."""
    try:
        _publish(key, lines)
    except Exception:
        log.warning("build %s: could not publish output lines", key, exc_info=True)


def forget_stream(key: str) -> None:
    """:func:`end_stream`, a Redis outage ignored (the agent's end of a build)."""
    with contextlib.suppress(Exception):
        end_stream(key)


def build_time_limit(tenant: Tenant) -> int:
    """Seconds a build of ``tenant`` may run (its quota; the default when it has none)."""
    limit = Quota.objects.filter(tenant=tenant).values_list("build_time_limit", flat=True).first()
    return int(limit or Quota._meta.get_field("build_time_limit").get_default())


def claim_build(build: Build) -> bool:
    """Mark a queued ``build`` running (once: a build sent twice runs once). A build
    that failed before it ran (its host went down) has its context upload deleted."""
    if Build.objects.filter(pk=build.pk, status=Build.Status.QUEUED).update(
        status=Build.Status.RUNNING, started_at=timezone.now()
    ):
        build.refresh_from_db()
        return True
    build.refresh_from_db()
    if build.status != Build.Status.RUNNING:
        _discard_context_archive(build)
    return False


def spec_of(build: Build) -> BuildSpec:
    """The plain spec of ``build`` a host runs (the agent's ``build_runner.run``)."""
    quota = Quota.objects.filter(tenant=build.tenant).first()
    return BuildSpec(
        id=build.pk,
        tenant=build.tenant.slug,
        name=build.name,
        reference=build.reference,
        time_limit=build_time_limit(build.tenant),
        dockerfile=build.dockerfile,
        dockerfile_text=build.dockerfile_text,
        build_args=dict(build.build_args),
        target=build.target,
        no_cache=build.no_cache,
        limits=quota_limits(quota) if quota is not None else None,
        git_url=build.git_url,
        context_path=build.context_path,
        context_archive=bool(build.context_archive),
    )


def store_build_image(build: Build, archive: IO[bytes]) -> Image:
    """The exported image of ``build``, stored as its own tenant's ``<slug>/<name>`` (as an upload
    by whoever started the build). Raises ServiceError (e.g. the tenant's storage is full)."""
    return images.upload_image(Actor(user=build.created_by), build.tenant, build.name, archive)


def finish_build(build: Build, error: str, image: Image | None = None) -> bool:
    """Record the end of ``build`` (succeeded when ``error`` is empty) if it is still running: one
    failed meanwhile (its host was marked down) stays failed. Its context upload is deleted."""
    _discard_context_archive(build)
    status = Build.Status.FAILED if error else Build.Status.SUCCEEDED
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": timezone.now()}
    if image is not None:
        values["image"] = image
    return bool(Build.objects.filter(pk=build.pk, status=Build.Status.RUNNING).update(**values))


def _discard_context_archive(build: Build) -> None:
    """Delete the uploaded context tar of a build that ran or will never run."""
    if build.context_archive:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(build.context_archive)
        Build.objects.filter(pk=build.pk).update(context_archive="")


HOST_DOWN = "host {host} went down while the build was {state}; start the build again"
AGENT_RESTARTED = "the host agent of {host} restarted while the build was running; start the build again"


def fail_host_builds(host: Host, message: str, *, states: tuple[str, ...] = (Build.Status.RUNNING,)) -> int:
    """Mark ``host``'s builds in ``states`` failed with ``message`` (``{host}`` and ``{state}`` filled
    in), tell their live viewers after the transaction commits, and return how many there were.

    Called when a host is marked down (its queued and running builds) and when its agent starts
    (a build still "running" then was cut off by the agent's end). The agent of a build failed this
    way never overwrites the outcome (:func:`finish_build` only finishes running builds)."""
    failed: list[tuple[int, dict[str, str]]] = []
    now = timezone.now()
    for build in Build.objects.filter(host=host, status__in=states):
        error = message.format(host=host.name, state=build.status)
        line = {"cursor": next_cursor(build.output), "stream": "error", "text": error}
        if Build.objects.filter(pk=build.pk, status=build.status).update(
            status=Build.Status.FAILED,
            error=error,
            finished_at=now,
            output=[*build.output, line][-STORED_LINES:],
        ):
            failed.append((build.pk, line))
            if build.status == Build.Status.QUEUED:
                _discard_context_archive(build)
            log.warning("build %s on host %s failed: %s", build.pk, host.name, error)

    def tell_viewers() -> None:
        for pk, line in failed:
            with contextlib.suppress(Exception):  # Redis down: the row says it
                _publish(str(pk), [line])

    if failed:
        transaction.on_commit(tell_viewers)
    return len(failed)


def next_cursor(output: list[dict[str, str]]) -> str:
    """The cursor after the last stored line (lines of older builds may have none)."""
    last = output[-1].get("cursor", "") if output else "0"
    return str(int(last) + 1 if last.isdigit() else len(output) + 1)


def redispatch_on_agent_start(sender: object, host: Host, **kwargs: object) -> None:
    """deployments.desired.agent_started (an agent started): its queued builds
    are sent again (:func:`redispatch_host_builds`)."""
    redispatch_host_builds(host)


def dispatch_on_heartbeat(sender: object, host_id: int, **kwargs: object) -> None:
    """hosts.signals.host_beat (both agents' heartbeats): the host's waiting builds are sent
    (:func:`dispatch_builds`)."""
    host = Host.objects.filter(pk=host_id).first()
    if host is not None:
        dispatch_builds(host)


def fail_on_agent_restart(sender: object, host: Host, **kwargs: object) -> None:
    """hosts.signals.agent_restarted: the builds the old agent ran are gone with it."""
    fail_host_builds(host, AGENT_RESTARTED)


def fail_on_host_down(sender: object, host: Host, **kwargs: object) -> None:
    """hosts.signals.host_down: the host's waiting and running builds fail (start them again)."""
    fail_host_builds(host, HOST_DOWN, states=("queued", "running"))


def forget_deleted_tenant(sender: object, slug: str, **kwargs: object) -> None:
    """tenants.signals.tenant_gone (connected in BuildsConfig.ready): see :func:`forget_tenant_contexts`."""
    forget_tenant_contexts(slug)


def tenants_building_on(sender: object, host: Host, **kwargs: object) -> set[int]:
    """usage.signals.storing_tenants (connected in BuildsConfig.ready): the tenants with a build
    placed on ``host`` (any, finished ones too: the engine keeps their build cache there until it
    evicts it), whose storage there counts against their storage quota."""
    return set(Build.objects.filter(host=host).values_list("tenant_id", flat=True).distinct())
