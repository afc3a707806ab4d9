"""Which repository of which registry each blob was last pulled from or pushed to.

Kept in ``<engine root>/registry-sources.json`` so that a push to the same
registry can ask for a cross-repository mount (the registry links the blob it
already has instead of receiving it again). A stale entry costs nothing: the
registry then answers 202 and the blob is uploaded as usual.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from engine.fsutil import atomic_write_json, file_lock

SOURCES_FILE_NAME = "registry-sources.json"
_MAX_ENTRIES = 20000


class BlobSources:
    """``{registry: {digest: repository}}`` in one small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def lookup(self, registry: str, digests: Iterable[str]) -> dict[str, str]:
        """The known repository of each of ``digests`` in ``registry`` (digests without one are left out)."""
        known = self._load().get(registry, {})
        return {d: known[d] for d in digests if isinstance(known.get(d), str)}

    def record(self, registry: str, repository: str, digests: Iterable[str]) -> None:
        """Remember that ``repository`` of ``registry`` has ``digests`` (best effort, never raises)."""
        try:
            with file_lock(self.path.with_name(self.path.name + ".lock")):
                doc = self._load()
                entries = doc.setdefault(registry, {})
                for d in digests:
                    entries.pop(d, None)
                    entries[d] = repository
                while len(entries) > _MAX_ENTRIES:  # oldest first (dicts keep insertion order)
                    entries.pop(next(iter(entries)))
                atomic_write_json(self.path, doc, 0o600, compact=True)
        except OSError:
            pass
