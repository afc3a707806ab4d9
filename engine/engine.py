"""The engine facade: one object per (root, instance) that the CLI and the host agent use."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from engine.cgroups.layout import detect_cgroup_layout
from engine.images.model import Image
from engine.images.store import ImageStore
from engine.logs.k8s_file import LogLine
from engine.paths import EnginePaths, default_instance, default_root, validate_instance
from engine.runtime.containers import ContainerManager
from engine.runtime.model import Container, ContainerSpec, ExecSpec


@functools.cache
def _cgroup_hierarchies() -> tuple[Path, ...]:
    """The cgroup hierarchy roots of this host (mounts do not change while we run)."""
    return tuple(Path(p) for p in detect_cgroup_layout().hierarchy_dirs())


class Engine:
    """A per-host container engine instance.

    ``root`` holds every file the engine owns; ``instance`` names its cgroups,
    crun state and firewall tables so several instances coexist on one machine.
    Every method raises a subclass of :class:`engine.errors.EngineError` on
    bad input or a failed operation.
    """

    def __init__(self, root: Path | str | None = None, instance: str | None = None) -> None:
        self.paths = EnginePaths(Path(root) if root is not None else default_root())
        self.instance = validate_instance(instance or default_instance())
        self.paths.ensure()
        self.images = ImageStore(self.paths)
        self.containers = ContainerManager(self.paths, self.instance, self.images, _cgroup_hierarchies)

    # ---- containers -------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Container:
        """Create a container (not started). See ContainerManager.create."""
        return self.containers.create(spec)

    def run(self, spec: ContainerSpec) -> Container:
        """Create and start a container; on a failed start nothing is left behind."""
        container = self.containers.create(spec)
        try:
            return self.containers.start(container)
        except BaseException:
            self.containers.remove(container, force=True)
            raise

    def start(self, ref: str) -> Container:
        """Start a created or stopped container."""
        return self.containers.start(ref)

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        """Stop with the stop signal, then SIGKILL after ``timeout`` seconds."""
        return self.containers.stop(ref, timeout)

    def kill(self, ref: str, signal: str = "SIGKILL") -> Container:
        """Send a signal to a running container."""
        return self.containers.kill(ref, signal)

    def restart(self, ref: str, timeout: int | None = None) -> Container:
        """Stop then start a container."""
        return self.containers.restart(ref, timeout)

    def remove(self, ref: str, *, force: bool = False) -> Container:
        """Remove a container; ``force`` kills it first if it runs."""
        return self.containers.remove(ref, force=force)

    def wait(self, ref: str, timeout: float | None = None) -> Container:
        """Wait until a container stops; returns its final record."""
        return self.containers.wait(ref, timeout)

    def get(self, ref: str) -> Container:
        """A container by name, id or id prefix."""
        return self.containers.get(ref)

    def list(self, *, all: bool = False) -> list[Container]:
        """Running containers, or every container with ``all``."""
        return self.containers.list(include_stopped=all)

    def exec(
        self,
        ref: str,
        spec: ExecSpec,
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        tty: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a process in a running container; wait() on the result for its exit code."""
        return self.containers.exec(ref, spec, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)

    def logs(
        self, ref: str, *, tail: int | None = None, since: datetime | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        """A container's output lines (see ContainerManager.logs)."""
        return self.containers.logs(ref, tail=tail, since=since, follow=follow)

    def rotate_logs(self) -> int:
        """Rotate the logs of running containers that reached their max size."""
        return self.containers.rotate_logs()

    # ---- images -----------------------------------------------------------------
    def image_ids_in_use(self) -> set[str]:
        """Ids of images that some container was created from."""
        return self.containers.image_ids_in_use()

    def image(self, reference: str) -> Image:
        """An image by reference or id."""
        return self.images.resolve(reference)
