"""Where an engine instance keeps its files.

Everything an engine owns sits below one root so that two engines never
collide and removing the root removes everything (DESIGN.md, "The engine on
disk").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidSpec

DEFAULT_ROOT = Path("/var/lib/hostpanel")
DEFAULT_INSTANCE = "hostpanel"
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")


def validate_instance(name: str) -> str:
    """Return ``name`` if it is a valid instance name, else raise InvalidSpec."""
    if not _INSTANCE_RE.match(name):
        raise InvalidSpec(
            f"invalid instance name {name!r}: use 1-31 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def default_root(env: Mapping[str, str] = os.environ) -> Path:
    """The engine root from $HOSTPANEL_ROOT (of ``env``), or /var/lib/hostpanel."""
    return Path(env.get("HOSTPANEL_ROOT") or DEFAULT_ROOT)


def default_instance(env: Mapping[str, str] = os.environ) -> str:
    """The instance name from $HOSTPANEL_INSTANCE (of ``env``), or 'hostpanel'."""
    return env.get("HOSTPANEL_INSTANCE") or DEFAULT_INSTANCE


@dataclass(frozen=True)
class EnginePaths:
    """The directory layout below an engine root."""

    root: Path

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def images_index(self) -> Path:
        return self.images / "index.json"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def names(self) -> Path:
        """One file per container name, created with O_EXCL to keep names unique."""
        return self.root / "names"

    @property
    def run(self) -> Path:
        """Runtime state: crun's state dir, conmon exit files and sockets."""
        return self.root / "run"

    @property
    def tmp(self) -> Path:
        """Scratch space on the same filesystem, for atomic renames."""
        return self.root / "tmp"

    @property
    def trash(self) -> Path:
        """Removed containers' directories, renamed here to be deleted off the caller's path
        (engine.runtime.trash); on the same file system as containers/, so the rename is atomic."""
        return self.root / "trash"

    @property
    def tenants(self) -> Path:
        return self.root / "tenants"

    @property
    def events(self) -> Path:
        """The event journal (engine.events): events.log and its rotated events.log.1."""
        return self.root / "events"

    def blob(self, digest: str) -> Path:
        """Path of the blob with ``digest`` ('sha256:<hex>')."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise InvalidSpec(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
        return self.blobs / hexpart

    def layout_dirs(self) -> tuple[Path, ...]:
        """Every directory of the layout, in creation order."""
        return (
            self.blobs,
            self.images,
            self.layers,
            self.containers,
            self.volumes,
            self.names,
            self.run,
            self.tmp,
            self.trash,
            self.tenants,
        )

    def ensure(self) -> None:
        """Create the directories of the layout (idempotent)."""
        for d in self.layout_dirs():
            d.mkdir(parents=True, exist_ok=True)
