"""The layer cache of builds, per tenant, garbage-collected with the images.

On disk, below ``<root>/build-cache/``::

    <tenant>/entries/<key>.json   a step's result: the stage's layers, config and history after it
    <tenant>/refs/<image hex>.json   the cache keys a built image was made from
    pins/<build id>.json + .lock     keys and blobs of a build in progress (flock held while it runs)

A key is a sha256 over the tenant, the parent step's key, the instruction
text after substitution and (COPY/ADD) the content hash of what it reads, so
one tenant's keys can never name another tenant's entries. An entry lives
while an image in the store refers to it (through a ref) or a running build
pins it; :meth:`BuildCache.gc_keep` is the image store's GC hook: it drops
every other entry and returns the layer digests the store must keep.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.fsutil import atomic_write_json, read_json
from engine.images.blobs import BlobStore
from engine.images.digest import digest_hex
from engine.images.extract import remove_tree
from engine.runtime.idmap import validate_tenant


@dataclass(frozen=True)
class LayerInfo:
    """A layer of a stage: its blob digest, media type, diff_id and stored size."""

    digest: str
    diff_id: str
    media_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "diff_id": self.diff_id,
            "media_type": self.media_type,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LayerInfo:
        return cls(str(d["digest"]), str(d["diff_id"]), str(d["media_type"]), int(d["size"]))


@dataclass
class StageState:
    """A stage after some steps: its layers, OCI ``config`` section and history."""

    layers: list[LayerInfo] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": [la.to_json() for la in self.layers],
            "config": self.config,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageState:
        return cls(
            [LayerInfo.from_json(la) for la in d["layers"]],
            dict(d["config"]),
            [dict(h) for h in d["history"]],
        )

    def copy(self) -> StageState:
        """A deep copy (steps change config and history in place)."""
        return StageState.from_json(json.loads(json.dumps(self.to_json())))


def step_key(tenant: str, parent: str, text: str, content: str = "") -> str:
    """The cache key of a step (see the module docstring)."""
    h = hashlib.sha256()
    for part in (tenant, parent, text, content):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class Pin:
    """What a build in progress uses; held by an flock until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.id = secrets.token_hex(8)
        self.json_path = directory / f"{self.id}.json"
        self.lock_path = directory / f"{self.id}.lock"
        self.keys: set[str] = set()
        self.digests: set[str] = set()
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._save()

    def add(self, *, keys: Iterable[str] = (), digests: Iterable[str] = ()) -> None:
        """Protect more keys and blobs from GC (written before the blobs are committed)."""
        self.keys.update(keys)
        self.digests.update(digests)
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.json_path, {"keys": sorted(self.keys), "digests": sorted(self.digests)})

    def release(self) -> None:
        """Drop the pin (idempotent)."""
        if self._fd < 0:
            return
        for p in (self.json_path, self.lock_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        os.close(self._fd)
        self._fd = -1


class BuildCache:
    """The build cache of one engine root (see the module docstring)."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self.root = root
        self.blobs = blobs
        self.pins_dir = root / "pins"

    def _tenant_dir(self, tenant: str) -> Path:
        return self.root / validate_tenant(tenant)

    def lookup(self, tenant: str, key: str) -> StageState | None:
        """The cached state for ``key`` of ``tenant``, or None (also when a layer blob is gone)."""
        path = self._tenant_dir(tenant) / "entries" / f"{key}.json"
        try:
            state = StageState.from_json(read_json(path))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not all(self.blobs.exists(la.digest) for la in state.layers):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        return state

    def store(self, tenant: str, key: str, state: StageState) -> None:
        """Record ``state`` as the result of step ``key``."""
        atomic_write_json(self._tenant_dir(tenant) / "entries" / f"{key}.json", state.to_json())

    def pin(self) -> Pin:
        """A new pin for a build about to start."""
        return Pin(self.pins_dir)

    def reference(self, tenant: str, image_id: str, keys: Iterable[str]) -> None:
        """Record that the image ``image_id`` was built from the steps ``keys`` (adds to earlier refs)."""
        path = self._tenant_dir(tenant) / "refs" / f"{digest_hex(image_id)}.json"
        try:
            old = set(read_json(path))
        except (FileNotFoundError, ValueError, TypeError):
            old = set()
        atomic_write_json(path, sorted(old | set(keys)))

    def tenant_bytes(self, tenant: str) -> int:
        """Bytes of the layers ``tenant``'s cache entries hold (each layer counted once)."""
        entries = self._tenant_dir(tenant) / "entries"
        sizes: dict[str, int] = {}
        for path in entries.glob("*.json") if entries.is_dir() else ():
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
                for layer in StageState.from_json(read_json(path)).layers:
                    sizes[layer.digest] = layer.size
        return sum(sizes.values())

    def entry_count(self, tenant: str) -> int:
        """How many entries ``tenant`` has (for tests and `hpctl build` statistics)."""
        entries = self._tenant_dir(tenant) / "entries"
        return len(list(entries.glob("*.json"))) if entries.is_dir() else 0

    def forget(self, tenant: str) -> int:
        """Delete every cache entry and image reference of ``tenant``; returns how many entries went.

        The layer blobs they named are freed by the image store's next GC.
        """
        directory = self._tenant_dir(tenant)
        count = self.entry_count(tenant)
        for part in ("entries", "refs"):
            remove_tree(directory / part)
        if directory != self.pins_dir:
            with contextlib.suppress(FileNotFoundError, OSError):
                directory.rmdir()
        return count

    def gc_keep(self, image_ids: set[str]) -> set[str]:
        """The image store's GC hook: drop entries no image or running build needs; return digests to keep.

        ``image_ids`` are the images that remain. Called with the index lock held.
        """
        live_keys: set[str] = set()
        keep: set[str] = set()
        for pin_keys, pin_digests in self._live_pins():
            live_keys |= pin_keys
            keep |= pin_digests
        if not self.root.is_dir():
            return keep
        remaining = {digest_hex(i) for i in image_ids}
        for tenant_dir in self.root.iterdir():
            if tenant_dir == self.pins_dir or not tenant_dir.is_dir():
                continue
            keys = set(live_keys)
            refs = tenant_dir / "refs"
            if refs.is_dir():
                for ref in refs.glob("*.json"):
                    if ref.stem in remaining:
                        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
                            keys.update(read_json(ref))
                    else:
                        ref.unlink(missing_ok=True)
            entries = tenant_dir / "entries"
            if not entries.is_dir():
                continue
            for entry in entries.glob("*.json"):
                if entry.stem not in keys:
                    entry.unlink(missing_ok=True)
                    continue
                with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
                    keep.update(la.digest for la in StageState.from_json(read_json(entry)).layers)
        return keep

    def pin_is_live(self, pin_id: str) -> bool:
        """Whether the build that holds pin ``pin_id`` still runs (a killed build's pin is dropped)."""
        lock = self.pins_dir / f"{pin_id}.lock"
        if not pin_id.isalnum() or not lock.exists():
            return False
        return self._held_or_drop(lock)

    def _live_pins(self) -> Iterator[tuple[set[str], set[str]]]:
        if not self.pins_dir.is_dir():
            return
        for lock in self.pins_dir.glob("*.lock"):
            if self._held_or_drop(lock):
                with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
                    pinned = read_json(lock.with_suffix(".json"))
                    yield set(pinned["keys"]), set(pinned["digests"])

    @staticmethod
    def _held_or_drop(lock: Path) -> bool:
        """Whether a build holds ``lock``; if none does, its pin files are removed."""
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                return True
            for p in (lock.with_suffix(".json"), lock):  # the build that held it is gone
                p.unlink(missing_ok=True)
            return False
        finally:
            os.close(fd)
