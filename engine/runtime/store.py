"""Container records on disk: ``<root>/containers/<id>/container.json`` and unique names."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from engine.errors import Conflict, ContainerNotFound, InvalidSpec
from engine.fsutil import atomic_write_json, file_lock, lock_if_free, read_json, shallow_copy
from engine.paths import EnginePaths
from engine.runtime.model import Container
from engine.runtime.trash import Trash

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
_ADJECTIVES = (
    "brave",
    "calm",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "merry",
    "nimble",
    "proud",
    "quiet",
    "swift",
    "tidy",
    "vivid",
    "witty",
    "zesty",
)
_NOUNS = (
    "otter",
    "falcon",
    "maple",
    "comet",
    "harbor",
    "lynx",
    "cedar",
    "pebble",
    "quartz",
    "raven",
    "sparrow",
    "tulip",
    "walrus",
    "yak",
    "zephyr",
    "badger",
    "heron",
    "koala",
)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid container name, else raise InvalidSpec."""
    if not _NAME_RE.match(name):
        raise InvalidSpec(
            f"invalid container name {name!r}: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


class ContainerStore:
    """Reads and writes container records; keeps names unique within an engine root."""

    def __init__(self, paths: EnginePaths, trash: Trash | None = None) -> None:
        self.paths = paths
        self.trash = trash if trash is not None else Trash(paths.trash)
        if self.trash.directory != Path(
            os.path.abspath(paths.trash)
        ):  # what the trash deletes must be this root's
            raise ValueError(
                f"the trash of the engine root {paths.root} is {paths.trash}, not {self.trash.directory}"
            )
        # Parsed records by container id, with the file identity they were read at (see all()).
        self._parsed: dict[str, tuple[tuple[int, int, int], Container]] = {}

    def directory(self, cid: str) -> Path:
        return self.paths.containers / cid

    def secrets_dir(self, cid: str) -> Path:
        """Where the container's secrets tmpfs is mounted (see engine.runtime.secrets)."""
        return self.directory(cid) / "secrets"

    def _record(self, cid: str) -> Path:
        return self.directory(cid) / "container.json"

    def _lock_file(self, cid: str) -> Path:
        return self.paths.run / "locks" / cid

    def lock(self, cid: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for changing one container's state (a create holds it from before
        the name is reserved until the record is saved or undone)."""
        return file_lock(self._lock_file(cid))

    def lock_if_abandoned(self, cid: str) -> contextlib.AbstractContextManager[bool]:
        """The container's lock if no live process holds it (yields False if one does): what a
        create left without a record is a crash's leftover exactly when this yields True."""
        return lock_if_free(self._lock_file(cid))

    def forget_lock(self, cid: str) -> None:
        """Delete the container's lock file (it has no record and no name any more)."""
        with contextlib.suppress(FileNotFoundError):
            self._lock_file(cid).unlink()

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(32)

    def reserve_name(self, name: str | None, cid: str) -> str:
        """Claim ``name`` (or a generated one) for ``cid``; Conflict if already taken."""
        if name is None:
            for _ in range(100):
                candidate = (
                    f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}_{secrets.randbelow(1000)}"
                )
                with contextlib.suppress(Conflict):
                    return self.reserve_name(candidate, cid)
            raise Conflict("could not generate a free container name; pass --name")
        validate_name(name)
        path = self.paths.names / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            owner = path.read_text().strip() if path.exists() else "?"
            raise Conflict(
                f"the container name {name!r} is already in use by container {owner[:12]}; "
                "remove that container or choose another name"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(cid)
        return name

    def release_name(self, name: str, cid: str) -> None:
        """Free ``name`` if ``cid`` holds it."""
        path = self.paths.names / name
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == cid:
                path.unlink()

    def save(self, container: Container) -> None:
        atomic_write_json(self._record(container.id), container.to_dict())
        # A later file may get this one's inode and, within a clock tick, its mtime: forget it here.
        self._parsed.pop(container.id, None)

    def load(self, cid: str) -> Container:
        """The container's record as on disk now (never from the cache all() keeps)."""
        try:
            return Container.from_dict(read_json(self._record(cid)))
        except FileNotFoundError:
            raise ContainerNotFound(f"no such container: {cid}") from None

    def ids(self) -> list[str]:
        if not self.paths.containers.exists():
            return []
        return [p.name for p in self.paths.containers.iterdir() if (p / "container.json").exists()]

    def all(self) -> Iterator[Container]:
        """Every container's record; a directory without one (mid-create or mid-remove) is skipped.

        A long-running process (the Docker API daemon, the host agent) lists often: a record whose
        file is unchanged since this store last read it (same inode, mtime and size; every save
        replaces the file) is not read again. Each caller gets its own record object: change its
        fields by assignment (as the engine does), never its lists or dicts in place.
        """
        try:
            entries = list(os.scandir(self.paths.containers))
        except FileNotFoundError:
            return
        present: set[str] = set()
        for entry in entries:
            path = f"{entry.path}/container.json"
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            identity = (st.st_ino, st.st_mtime_ns, st.st_size)
            present.add(entry.name)
            cached = self._parsed.get(entry.name)
            if cached is None or cached[0] != identity:
                try:
                    with open(path, "rb") as f:
                        container = Container.from_dict(json.load(f))
                except (FileNotFoundError, ValueError):
                    continue
                cached = (identity, container)
                self._parsed[entry.name] = cached
            yield shallow_copy(cached[1])
        for gone in self._parsed.keys() - present:
            self._parsed.pop(gone, None)

    def find(self, ref: str) -> Container:
        """The container whose name, full id or unique id prefix is ``ref``."""
        if not ref:
            raise ContainerNotFound("no container given")
        name_file = self.paths.names / ref
        if _NAME_RE.match(ref) and name_file.exists():
            with contextlib.suppress(FileNotFoundError, ContainerNotFound):
                return self.load(name_file.read_text().strip())
        if re.fullmatch(r"[0-9a-f]{1,64}", ref):
            if len(ref) == 64:  # a whole id is a prefix of itself only: no need to list them all
                with contextlib.suppress(ContainerNotFound):
                    return self.load(ref)
                raise ContainerNotFound(f"no such container: {ref} (see `hpctl ps -a`)")
            matches = [cid for cid in self.ids() if cid.startswith(ref)]
            if len(matches) == 1:
                return self.load(matches[0])
            if len(matches) > 1:
                raise InvalidSpec(f"container id prefix {ref!r} is ambiguous; give more digits")
        raise ContainerNotFound(f"no such container: {ref} (see `hpctl ps -a`)")

    def delete(self, container: Container) -> None:
        """Remove the record, its directory and its name.

        The directory is renamed into the trash, atomically, and deleted off the caller's path
        (engine.runtime.trash): when this returns the container is gone from every listing and
        lookup and its name is free. Raises RuntimeFailure, with nothing changed, when something
        is still mounted below the directory (unmount the rootfs and secrets first).
        """
        self.trash.discard(self.directory(container.id))
        self.release_name(container.name, container.id)
        self.forget_lock(container.id)
