"""Business rules of builds: who may start and see them, where the context comes from, and running one.

A developer starts a build with an uploaded context tar (or, where the admin
allows it, a directory or a git repository in the tenant's own directory
``<root>/<tenant slug>`` under one of ``HOSTPANEL_BUILD_CONTEXT_ROOTS``, the repository
cloned shallowly on the host), or with no context at all, and
optionally the Dockerfile's text instead of the context's Dockerfile. It runs on a
host that is up, through that host's agent (:mod:`hostpanel.agent.build_tasks`),
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
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from engine.build.dockerfile import parse_dockerfile
from engine.build.git import clone_context, parse_git_url
from engine.build.model import BuildOptions, BuildTimedOut, ContextLimits
from engine.build.recover import remove_interrupted_builds
from engine.build.upload import unpack_context
from engine.engine import Engine
from engine.errors import EngineError, InvalidSpec
from engine.images.extract import remove_tree
from hostpanel.audit.services import Actor, audited
from hostpanel.builds import dispatch
from hostpanel.builds.models import Build
from hostpanel.errors import InvalidRequest, NoCapacity, ServiceError
from hostpanel.hosts.models import Host
from hostpanel.images import services as images
from hostpanel.tenants.access import has_role, require_role
from hostpanel.tenants.limits import build_run_limits, write_tenant_limits
from hostpanel.tenants.models import Quota, Role, Tenant

log = logging.getLogger(__name__)
MAX_DOCKERFILE_CHARS = 256 * 1024
SCRATCH_PREFIX = "hpbuild-"  # a build's directory in the engine's tmp
STORED_LINES = 5000
CHUNK = 1024 * 1024
_FLUSH_LINES = 200
_FLUSH_SECONDS = 0.25


def list_builds(actor: Actor, tenant: Tenant) -> QuerySet[Build]:
    require_role(actor, tenant, Role.VIEWER)
    return Build.objects.filter(tenant=tenant)


def context_limits() -> ContextLimits:
    """The admin's size bounds on what a build reads from its context."""
    return ContextLimits(
        dockerfile=settings.HOSTPANEL_BUILD_MAX_DOCKERFILE_BYTES,
        dockerignore=settings.HOSTPANEL_BUILD_MAX_DOCKERIGNORE_BYTES,
        context=settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES,
    )


def tenant_context_roots(tenant: Tenant) -> list[Path]:
    """The directories a tenant's builds may read a context from: ``<root>/<slug>`` for each
    root of ``HOSTPANEL_BUILD_CONTEXT_ROOTS`` (symlinks the admin made resolved), never a shared one."""
    return [(Path(p) / tenant.slug).resolve() for p in settings.HOSTPANEL_BUILD_CONTEXT_ROOTS if p]


def _under_tenant_roots(path: Path, tenant: Tenant, field: str, what: str) -> Path:
    """``path`` resolved, if it is a directory in one of the tenant's own context directories.
    The refusal is the same whether the path is missing or another tenant's: it reveals neither."""
    roots = tenant_context_roots(tenant)
    if not roots:
        raise InvalidRequest(f"{field}: building from {what} is not enabled here; upload a context tar")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots) or not resolved.is_dir():
        raise InvalidRequest(
            f"{field}: {path} is not {what} in this tenant's context directories "
            f"({', '.join(str(r) for r in roots)}); put it there or upload a context tar instead"
        )
    return resolved


def check_context_path(path: str, tenant: Tenant) -> Path:
    """``path`` resolved, if a directory under the tenant's own context roots; else InvalidRequest."""
    return _under_tenant_roots(Path(path), tenant, "context_path", "a directory")


def check_git_url(url: str, tenant: Tenant) -> str:
    """``url`` (``PATH[#REF][:DIR]`` or ``file://``) with its repository path resolved (symlinks
    followed), if that is a directory under the tenant's own context roots; InvalidRequest otherwise."""
    if not tenant_context_roots(tenant):
        raise InvalidRequest(
            "git_url: building from a git repository is not enabled here; upload a context tar"
        )
    try:
        source = parse_git_url(url)
    except InvalidSpec as exc:
        raise InvalidRequest(f"git_url: {exc}") from None
    resolved = _under_tenant_roots(source.repository, tenant, "git_url", "a repository")
    fragment = f"#{source.ref}" if source.ref or source.subdir else ""
    return f"{resolved}{fragment}{':' + source.subdir if source.subdir else ''}"


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

    Called when a build is started, when one ends, and on every heartbeat of the host's agent (so a
    lost message or a Redis outage only delays). Dispatchers of one host are serialised by a write
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
            transaction.on_commit(lambda: [dispatch.send_build(pk, queue) for pk in sent])
    return sent


def redispatch_host_builds(host: Host) -> list[int]:
    """On the agent's start: send the host's queued builds again (a message its dead build worker had
    taken is lost; one sent twice runs once, see :func:`execute_build`)."""
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


class OutputSink:
    """The build's ``on_output``: keeps the last lines in the row and sends them to the log stream.

    A flusher thread stores and then sends what is pending every ``_FLUSH_SECONDS`` (sooner
    after ``_FLUSH_LINES`` lines), so a line is seen at once even when the build then prints
    nothing for a long time (a ``RUN sleep``), and the row is never behind the stream. Only a
    running build's row is updated (one failed meanwhile keeps its reason). Each line carries
    its ``cursor`` (1, 2, ...), the same in the row and on the stream, so a page showing the
    stored lines joins the live ones without gap or repeat. Neither a database nor a Redis
    outage fails the build.
    """

    def __init__(self, build: Build) -> None:
        self.build = build
        self.key = str(build.pk)
        self.kept: list[dict[str, str]] = []
        self._pending: list[dict[str, str]] = []
        self._count = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._flusher = threading.Thread(target=self._flush_loop, name=f"build-{self.key}", daemon=True)
        self._flusher.start()

    def __call__(self, stream: str, text: str) -> None:
        with self._lock:
            self._count += 1
            line = {"cursor": str(self._count), "stream": stream, "text": text}
            self._pending.append(line)
            self.kept.append(line)
            if len(self.kept) > 2 * STORED_LINES:
                del self.kept[:-STORED_LINES]
            if len(self._pending) >= _FLUSH_LINES:
                self._wake.set()

    def close(self) -> None:
        """Store and send what is left, and stop the flusher thread."""
        self._closed = True
        self._wake.set()
        self._flusher.join()
        self._flush()
        _forget(self.key)

    def _flush_loop(self) -> None:
        from django.db import connection

        try:
            while not self._closed:
                self._wake.wait(_FLUSH_SECONDS)
                self._wake.clear()
                self._flush()
        finally:
            connection.close()  # this thread's own database connection

    def _flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            self.kept = self.kept[-STORED_LINES:]
            kept = list(self.kept)
        if not lines:
            return
        try:  # first the row, so that whoever sees a line live finds the lines before it stored
            Build.objects.filter(pk=self.build.pk, status=Build.Status.RUNNING).update(output=kept)
        except Exception:
            log.warning("build %s: could not store output lines", self.key, exc_info=True)
        try:
            _publish(self.key, lines)
        except Exception:  # a viewer-side outage (Redis) must not fail the build; the row keeps it
            log.warning("build %s: could not publish output lines", self.key, exc_info=True)


def _publish(key: str, lines: list[dict[str, str]]) -> None:
    """The adapter to the log pipeline (kind "build", key = build id)."""
    from hostpanel.logstream.publish import publish_lines

    publish_lines("build", key, lines)


def _forget(key: str) -> None:
    """The stream of a finished build needs no counters any more."""
    from hostpanel.logstream.publish import forget

    forget("build", key)


def _unpack_context(archive: Path, into: Path) -> None:
    """Extract an uploaded context tar (plain or compressed) safely: nothing can land outside ``into``,
    devices are skipped and the unpacked tar is bounded (FIFOs kept are refused when a build reads them)."""
    limit = settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES
    unpack_context(archive, into, limit=limit, what="the context tar (HOSTPANEL_BUILD_MAX_CONTEXT_BYTES)")


def execute_build(build: Build, engine: Engine) -> Build:
    """Run ``build`` on ``engine`` (a build worker of the host agent calls this) and record the outcome.
    Never raises for a failed build: the row says ``failed`` with the error; the context upload is
    deleted either way. The tenant's next waiting build is sent when it ends."""
    try:
        return _execute(build, engine)
    finally:
        if build.host is not None:
            dispatch_builds(build.host)


def build_time_limit(tenant: Tenant) -> int:
    """Seconds a build of ``tenant`` may run (its quota; the default when it has none)."""
    limit = Quota.objects.filter(tenant=tenant).values_list("build_time_limit", flat=True).first()
    return int(limit or Quota._meta.get_field("build_time_limit").get_default())


def _execute(build: Build, engine: Engine) -> Build:
    if not Build.objects.filter(pk=build.pk, status=Build.Status.QUEUED).update(
        status=Build.Status.RUNNING, started_at=timezone.now()
    ):
        build.refresh_from_db()
        if build.status != Build.Status.RUNNING:
            _discard_context_archive(build)  # failed before it ran (its host went down)
        return build
    limit = build_time_limit(build.tenant)
    deadline = time.monotonic() + limit
    sink = OutputSink(build)
    scratch: Path | None = None
    status, error, image = Build.Status.FAILED, "", None
    try:
        engine.paths.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=engine.paths.tmp))
        context, within = _prepare_context(build, scratch, sink)
        dockerfile = Path(build.dockerfile)
        if build.dockerfile_text:
            dockerfile = scratch / "Dockerfile"  # beside the context, not in it
            dockerfile.write_text(build.dockerfile_text, encoding="utf-8")
        write_tenant_limits(engine, build.tenant)  # its quota sits above the RUN steps before they run
        result = engine.build(
            BuildOptions(
                context=context,
                tag=build.reference,
                dockerfile=dockerfile,
                build_args=dict(build.build_args),
                target=build.target or None,
                no_cache=build.no_cache,
                tenant=build.tenant.slug,
                limits=context_limits(),
                context_within=within,
                run_limits=build_run_limits(),
                time_limit=max(0.001, deadline - time.monotonic()),  # the context took its part
            ),
            sink,
        )
        exported = scratch / "image.tar"
        engine.images.export(result.image.id, exported)
        with exported.open("rb") as f:
            image = images.upload_image(Actor(user=build.created_by), build.tenant, build.name, f)
        status = Build.Status.SUCCEEDED
    except BuildTimedOut:
        error = (
            f"the build ran longer than tenant {build.tenant.slug!r}'s build time limit of {limit} seconds "
            "and was stopped; make it faster, or ask an admin to raise the limit"
        )
        sink("error", error)
    except (EngineError, ServiceError) as exc:
        error = str(exc)
        sink("error", error)
    except Exception as exc:  # a bug or a host problem: the row must still end, saying so
        log.exception("build %s failed unexpectedly", build.pk)
        error = f"the build failed unexpectedly ({type(exc).__name__}: {exc}); see the host agent's log"
        sink("error", error)
    finally:
        sink.close()
        if scratch is not None:
            remove_tree(scratch)
        _discard_context_archive(build)
        # only a build still running: one failed meanwhile (its host was marked down) stays failed
        Build.objects.filter(pk=build.pk, status=Build.Status.RUNNING).update(
            status=status, error=error, image=image, finished_at=timezone.now(), context_archive=""
        )
    build.refresh_from_db()
    return build


def _discard_context_archive(build: Build) -> None:
    """Delete the uploaded context tar of a build that ran or will never run."""
    if build.context_archive:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(build.context_archive)
        Build.objects.filter(pk=build.pk).update(context_archive="")


def _prepare_context(build: Build, scratch: Path, sink: OutputSink) -> tuple[Path, Path | None]:
    """The context directory of ``build`` on this host: the unpacked upload, the allowed directory,
    a shallow clone of the allowed git repository (inside ``scratch``), or an empty directory; and
    the directory the engine must open it beneath (the tenant's own root, for a path)."""
    if build.context_path:
        context = check_context_path(build.context_path, build.tenant)
        within = next(r for r in tenant_context_roots(build.tenant) if context.is_relative_to(r))
        return context, within
    if build.git_url:
        source = parse_git_url(check_git_url(build.git_url, build.tenant))
        sink("info", f"cloning {source.repository} at {source.ref or 'HEAD'} (depth 1)")
        return clone_context(source, scratch / "git"), None
    context = scratch / "context"
    context.mkdir()
    if build.context_archive:
        _unpack_context(Path(build.context_archive), context)
    return context, None


def clean_interrupted_builds(engine: Engine) -> list[str]:
    """What builds killed with their agent left on this host's engine, removed (the agent calls
    this on start, when none of its builds runs): RUN containers, their temporary images and the
    builds' scratch directories. Returns what was removed."""
    removed = remove_interrupted_builds(engine)
    if engine.paths.tmp.is_dir():
        for scratch in sorted(engine.paths.tmp.glob(f"{SCRATCH_PREFIX}*")):
            remove_tree(scratch)
            removed.append(f"build scratch directory {scratch.name}")
    return removed


HOST_DOWN = "host {host} went down while the build was {state}; start the build again"
AGENT_RESTARTED = "the host agent of {host} restarted while the build was running; start the build again"


def fail_host_builds(host: Host, message: str, *, states: tuple[str, ...] = (Build.Status.RUNNING,)) -> int:
    """Mark ``host``'s builds in ``states`` failed with ``message`` (``{host}`` and ``{state}`` filled
    in), tell their live viewers after the transaction commits, and return how many there were.

    Called when a host is marked down (its queued and running builds) and when its agent starts
    (a build still "running" then was cut off by the agent's end). The agent of a build failed this
    way never overwrites the outcome (:func:`execute_build` only finishes running builds)."""
    failed: list[tuple[int, dict[str, str]]] = []
    now = timezone.now()
    for build in Build.objects.filter(host=host, status__in=states):
        error = message.format(host=host.name, state=build.status)
        line = {"cursor": _next_cursor(build.output), "stream": "error", "text": error}
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


def _next_cursor(output: list[dict[str, str]]) -> str:
    """The cursor after the last stored line (lines of older builds may have none)."""
    last = output[-1].get("cursor", "") if output else "0"
    return str(int(last) + 1 if last.isdigit() else len(output) + 1)
