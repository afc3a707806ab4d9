"""What a build is asked to do and what it returns."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.cgroups.resources import Resources
from engine.errors import EngineError
from engine.images.model import Image
from engine.runtime.model import DEFAULT_TENANT

# on_output(stream, text): stream is "step" (STEP n/N headers), "info" (cache hits, results,
# warnings), or "stdout"/"stderr" (a RUN's output, line by line as it comes).
OutputCallback = Callable[[str, str], None]


def ignore_output(stream: str, text: str) -> None:
    """The default output callback: drop everything."""


@dataclass(frozen=True)
class ContextLimits:
    """Size bounds on what a build reads from its context (bytes)."""

    dockerfile: int = 1024**2
    dockerignore: int = 1024**2
    context: int = 4 * 1024**3


class Cancellation:
    """Lets another thread stop a build: :meth:`cancel` kills the RUN in progress and the build
    raises :class:`BuildCancelled` at its next step (the Docker API cancels when its client goes away)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.cancelled = False

    def cancel(self) -> None:
        """Cancel the build (again: nothing more happens)."""
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the build is cancelled (now, if it already was)."""
        with self._lock:
            if not self.cancelled:
                self._callbacks.append(callback)
                return
        callback()


@dataclass(frozen=True)
class BuildOptions:
    """A build request: ``context`` directory, ``tag`` for the result, and the docker-build options.

    ``dockerfile`` is relative to the context unless absolute (default: ``Dockerfile``).
    ``context_within``, when given, is a directory the context must lie below: the context is
    opened beneath it (a symlink swapped in on the way is refused), then read through that one fd.
    ``tenant`` builds as that tenant: its user namespace, quota and cache, ``FROM`` and
    ``COPY --from`` see only its own images, the base set and earlier stages, and ``tag``
    must be in its namespace (``<tenant>/<name>:<tag>``). None is an operator build: it
    runs as tenant ``default``, sees every image and makes a base image.
    ``labels`` are set on the built image (over the Dockerfile's LABELs, like ``docker build --label``).
    ``cancel`` lets another thread stop the build (:class:`Cancellation`).
    ``time_limit`` (seconds, none: unbounded): past it the running RUN container is killed and
    the build raises :class:`BuildTimedOut`.
    """

    context: Path
    tag: str
    dockerfile: Path | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    tenant: str | None = None
    limits: ContextLimits = field(default_factory=ContextLimits)
    context_within: Path | None = None
    time_limit: float | None = None
    run_limits: Resources = field(default_factory=Resources)  # each RUN's own, capped by the tenant quota
    labels: dict[str, str] = field(default_factory=dict)
    cancel: Cancellation | None = field(default=None, compare=False)

    @property
    def run_as(self) -> str:
        """The tenant whose user namespace, quota and cache the build uses."""
        return self.tenant or DEFAULT_TENANT


@dataclass(frozen=True)
class BuildResult:
    """The built image and how the build went."""

    image: Image
    steps: int
    cached_steps: int
    run_steps: int  # RUN instructions actually executed (0 for a fully cached build)


class BuildFailed(EngineError):
    """A step of a build failed (a RUN exited non-zero); the message carries its output."""

    exit_code = 1


class BuildTimedOut(BuildFailed):
    """A build ran past its time limit: its RUN container was killed and nothing was kept."""


class BuildCancelled(BuildFailed):
    """A build was cancelled (:class:`Cancellation`): its RUN container was killed and nothing was kept."""
