"""Per-tenant host UID/GID ranges for user namespaces.

Each tenant gets its own block of 65536 host ids; container root (uid 0) is
host uid ``base``. Blocks are allocated once, on disk, so they never change
and two tenants never share one. A purged tenant's block is retired, never
handed out again (files owned by it may survive somewhere, e.g. in a backup),
so a new tenant re-using the name gets a fresh block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidSpec
from engine.fsutil import atomic_write_json, file_lock, read_json

RANGE_SIZE = 65536
FIRST_BASE = 100000
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def validate_tenant(name: str) -> str:
    """Return ``name`` if it is a valid tenant name, else raise InvalidSpec."""
    if not _TENANT_RE.match(name):
        raise InvalidSpec(
            f"invalid tenant name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class IdRange:
    """A block of host ids: container id ``n`` is host id ``base + n``."""

    base: int
    size: int = RANGE_SIZE

    def contains(self, host_id: int) -> bool:
        return self.base <= host_id < self.base + self.size


class TenantIdRanges:
    """Allocates and remembers each tenant's id block in ``<root>/tenants/idmap.json``."""

    def __init__(self, tenants_dir: Path, first_base: int = FIRST_BASE) -> None:
        self._file = tenants_dir / "idmap.json"
        self._retired_file = tenants_dir / "idmap-retired.json"
        self._lock = tenants_dir / ".idmap.lock"
        self._first_base = first_base

    def _load(self) -> dict[str, int]:
        if not self._file.exists():
            return {}
        data: dict[str, int] = read_json(self._file)
        return data

    def range_for(self, tenant: str) -> IdRange:
        """The tenant's id block, allocating the next free one on first use."""
        validate_tenant(tenant)
        current = self._load()
        if tenant in current:
            return IdRange(current[tenant])
        with file_lock(self._lock):
            current = self._load()
            if tenant not in current:
                used = set(current.values()) | set(self._retired())
                base = self._first_base
                while base in used:
                    base += RANGE_SIZE
                if base + RANGE_SIZE > 2**32 - 1:
                    raise InvalidSpec("no free uid range left for a new tenant")
                current[tenant] = base
                atomic_write_json(self._file, current)
            return IdRange(current[tenant])

    def _retired(self) -> list[int]:
        if not self._retired_file.exists():
            return []
        data: list[int] = read_json(self._retired_file)
        return data

    def retire(self, tenant: str) -> IdRange | None:
        """Forget the tenant's block for good (never allocated again); returns it, or None if it had none."""
        validate_tenant(tenant)
        with file_lock(self._lock):
            current = self._load()
            base = current.pop(tenant, None)
            if base is None:
                return None
            atomic_write_json(self._retired_file, sorted({*self._retired(), base}))
            atomic_write_json(self._file, current)
        return IdRange(base)

    def all(self) -> dict[str, IdRange]:
        """Every allocated tenant block."""
        return {t: IdRange(b) for t, b in self._load().items()}
