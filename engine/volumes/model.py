"""Plain dataclasses for volumes: the record on disk and the usage report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# A volume with a size is an ext4 file system in a sparse file, loop-mounted on use;
# a volume without one is a plain directory on the host's file system.
DRIVER_EXT4 = "ext4-loop"
DRIVER_DIR = "dir"


@dataclass
class Volume:
    """A named volume as the engine records it (``<root>/volumes/<name>/volume.json``).

    ``size`` is the cap in bytes (0: no cap, driver ``dir``). ``uid_base`` is
    the tenant's first host uid: the volume's root belongs to it, so the
    container's root can write it. ``overhead`` is the ext4 metadata the
    kernel does not count as usable space (used to report usage while the
    volume is not mounted).
    """

    name: str
    tenant: str
    driver: str
    size: int
    uid_base: int
    created: str
    overhead: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Volume:
        """Rebuild a record, ignoring keys this version does not know."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class VolumeUsage:
    """Disk use of one volume.

    ``used``: bytes in use inside the volume (what `df` would say);
    ``allocated``: bytes the volume takes on the host's disk (the sparse
    file's blocks, or the directory tree's blocks); ``size``: the cap (0: none).
    """

    name: str
    tenant: str
    size: int
    used: int
    allocated: int
    mounted: bool
    users: int


@dataclass(frozen=True)
class TenantVolumeUsage:
    """Disk use of all volumes of one tenant, for metering."""

    tenant: str
    volumes: int
    size: int
    used: int
    allocated: int
