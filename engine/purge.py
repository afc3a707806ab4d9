"""What purging a tenant from an engine removed (see :meth:`engine.engine.Engine.purge_tenant`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PurgeReport:
    """The tenant's things a purge removed from one engine."""

    tenant: str
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # "Untagged: x" / "Deleted: sha256:.." lines
    cache_entries: int = 0
    unpacked_layers: int = 0
    uid_base: int | None = None  # the retired uid range, if the tenant had one

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the agent's log and task result)."""
        return asdict(self)
