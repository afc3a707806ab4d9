"""A stand-in for the engine behind the follower's seam: containers whose logs are plain files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import ContainerNotFound


@dataclass
class FileContainer:
    id: str
    name: str
    log: Path
    log_max_files: int = 3


class FileContainers:
    def __init__(self) -> None:
        self.by_name: dict[str, FileContainer] = {}

    def log_path(self, container: FileContainer) -> Path:
        return container.log


class FileEngine:
    """``get(name)`` and ``containers.log_path(c)``: all the follower uses of the engine."""

    def __init__(self) -> None:
        self.containers = FileContainers()

    def add(self, name: str, log: Path, max_files: int = 3) -> FileContainer:
        container = FileContainer(id=f"id-{name}", name=name, log=log, log_max_files=max_files)
        self.containers.by_name[name] = container
        return container

    def add_log(self, name: str, directory: Path) -> Path:
        """Add container ``name`` logging to ``directory/ctr.log`` (created empty if missing); that file."""
        log = directory / "ctr.log"
        log.touch()
        self.add(name, log)
        return log

    def get(self, name: str) -> FileContainer:
        try:
            return self.containers.by_name[name]
        except KeyError:
            raise ContainerNotFound(f"no container {name!r}") from None
