"""Running one build on a host's engine, row-free.

A build is given as a plain :class:`hostpanel.builds.spec.BuildSpec` (the panel's, which the internal
API's claim answers); what it prints goes to a :class:`LineSink`, its context upload comes from
``archive`` and its exported image goes to ``store_image``: :mod:`hostpanel.agent.remote_build`
adapts these to the panel's internal API (the endpoints of :mod:`hostpanel.builds.internal`). What
builds killed with their agent left behind goes at the agent's start (:func:`clean_interrupted_builds`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.build.git import clone_context, parse_git_url
from engine.build.model import BuildOptions, BuildTimedOut
from engine.build.recover import remove_interrupted_builds
from engine.engine import Engine
from engine.errors import EngineError
from engine.images.extract import remove_tree
from hostpanel.builds.contexts import (
    check_context_path,
    check_git_url,
    context_limits,
    tenant_context_roots,
    unpack_context_archive,
)
from hostpanel.builds.spec import STORED_LINES, BuildSpec
from hostpanel.errors import ServiceError
from hostpanel.tenants.limits import apply_tenant_limits, build_run_limits

log = logging.getLogger(__name__)
SCRATCH_PREFIX = "hpbuild-"  # a build's directory in the engine's tmp
_FLUSH_LINES = 200
_FLUSH_SECONDS = 0.25

Line = dict[str, str]


class StepFailed(Exception):
    """A step of an adapter failed (the panel refused a call): the build fails with this message."""


class LineSink:
    """A build's ``on_output``: numbers the lines (``cursor`` 1, 2, ...) and hands them to
    :meth:`deliver` in batches from a flusher thread, every ``_FLUSH_SECONDS`` (sooner after
    ``_FLUSH_LINES`` lines), so a line is seen at once even when the build then prints nothing for
    long. ``kept`` holds the last :data:`STORED_LINES`. A failing delivery never fails the build."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.kept: list[Line] = []
        self._pending: list[Line] = []
        self._count = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._flusher = threading.Thread(target=self._flush_loop, name=f"build-{key}", daemon=True)
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
        """Deliver what is left, and stop the flusher thread."""
        self._closed = True
        self._wake.set()
        self._flusher.join()
        self._flush()

    def deliver(self, lines: list[Line], kept: list[Line]) -> None:
        """Hand over the new ``lines`` (``kept``: the last lines so far, them included)."""
        raise NotImplementedError

    def thread_done(self) -> None:
        """The flusher thread ends (its own resources can go)."""

    def _flush_loop(self) -> None:
        try:
            while not self._closed:
                self._wake.wait(_FLUSH_SECONDS)
                self._wake.clear()
                self._flush()
        finally:
            self.thread_done()

    def _flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            self.kept = self.kept[-STORED_LINES:]
            kept = list(self.kept)
        if not lines:
            return
        try:
            self.deliver(lines, kept)
        except Exception:
            log.warning("build %s: could not deliver output lines", self.key, exc_info=True)


def run(
    spec: BuildSpec,
    engine: Engine,
    sink: Callable[[str, str], None],
    archive: Callable[[Path], Path],
    store_image: Callable[[Path], object],
) -> str:
    """Build ``spec`` on ``engine``; ``archive(scratch)`` gives its context upload's path (fetched
    into ``scratch`` if need be), ``store_image(tar)`` takes the exported image. Returns the error
    ("" on success); never raises for a failed build (the error is also the sink's last line)."""
    deadline = time.monotonic() + spec.time_limit
    scratch: Path | None = None
    error = ""
    try:
        engine.paths.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=engine.paths.tmp))
        context, within = _prepare_context(spec, scratch, sink, archive)
        dockerfile = Path(spec.dockerfile)
        if spec.dockerfile_text:
            dockerfile = scratch / "Dockerfile"  # beside the context, not in it
            dockerfile.write_text(spec.dockerfile_text, encoding="utf-8")
        if spec.limits is not None:  # its quota sits above the RUN steps before they run
            apply_tenant_limits(engine, spec.tenant, spec.limits)
        result = engine.build(
            BuildOptions(
                context=context,
                tag=spec.reference,
                dockerfile=dockerfile,
                build_args=dict(spec.build_args),
                target=spec.target or None,
                no_cache=spec.no_cache,
                tenant=spec.tenant,
                limits=context_limits(),
                context_within=within,
                run_limits=build_run_limits(),
                time_limit=max(0.001, deadline - time.monotonic()),  # the context took its part
            ),
            sink,
        )
        exported = scratch / "image.tar"
        engine.images.export(result.image.id, exported)
        store_image(exported)
    except BuildTimedOut:
        error = (
            f"the build ran longer than tenant {spec.tenant!r}'s build time limit of {spec.time_limit} "
            "seconds and was stopped; make it faster, or ask an admin to raise the limit"
        )
    except (EngineError, ServiceError, StepFailed) as exc:
        error = str(exc) or type(exc).__name__
    except Exception as exc:  # a bug or a host problem: the build must still end, saying so
        log.exception("build %s failed unexpectedly", spec.id)
        error = f"the build failed unexpectedly ({type(exc).__name__}: {exc}); see the host agent's log"
    finally:
        if scratch is not None:
            remove_tree(scratch)
    if error:
        sink("error", error)
    return error


def _prepare_context(
    spec: BuildSpec, scratch: Path, sink: Callable[[str, str], None], archive: Callable[[Path], Path]
) -> tuple[Path, Path | None]:
    """The context directory of ``spec`` on this host: the allowed directory, a shallow clone of the
    allowed git repository (inside ``scratch``), the unpacked upload, or an empty directory; and the
    directory the engine must open it beneath (the tenant's own root, for a directory)."""
    if spec.context_path:
        context = check_context_path(spec.context_path, spec.tenant)
        within = next(r for r in tenant_context_roots(spec.tenant) if context.is_relative_to(r))
        return context, within
    if spec.git_url:
        source = parse_git_url(check_git_url(spec.git_url, spec.tenant))
        sink("info", f"cloning {source.repository} at {source.ref or 'HEAD'} (depth 1)")
        return clone_context(source, scratch / "git"), None
    context = scratch / "context"
    context.mkdir()
    if spec.context_archive:
        unpack_context_archive(archive(scratch), context)
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
