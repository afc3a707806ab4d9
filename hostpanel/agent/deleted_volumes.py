"""The agent removes the panel volumes deleted since its engine made them.

Each panel volume on this host's engine is labelled with its panel id (``LABEL_VOLUME``) and,
when an agent of this version made it, with the proof its desired document gave
(``LABEL_VOLUME_PROOF``, :mod:`hostpanel.volumes.held`). After a reconcile the agent names those
to the panel (``POST /internal/v1/host/volumes``, in batches) and removes the ones it answers were
deleted. Never a volume a container still
uses: not one the document's replicas mount, and the engine refuses to remove a volume any
container (running or not) mounts (no ``force``), whatever the panel answers. A volume without a
proof label (made by a version before these proofs) is not asked about and stays.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from engine.engine import Engine
from engine.errors import EngineError
from hostpanel.agent.credentials import PanelError
from hostpanel.agent.host_engine import LABEL_VOLUME

log = logging.getLogger(__name__)

LABEL_VOLUME_PROOF = "org.hostpanel.volume-proof"  # the proof the host was given it
BATCH = 1000  # volumes per request (hostpanel/volumes/internal.py's VOLUMES_MAX)


class VolumesClient(Protocol):
    def volumes_deleted(self, held: dict[int, str]) -> dict[str, Any]: ...


def remove_deleted(engine: Engine, client: VolumesClient, doc: dict[str, Any]) -> list[str]:
    """Remove this engine's panel volumes the panel says were deleted, but none the document's
    replicas mount nor any a container uses; the names removed."""
    mounted = {v["source"] for entry in doc["replicas"] for v in entry["volumes"]}
    held: dict[int, tuple[str, str]] = {}  # id -> (engine name, proof)
    for volume in engine.volume_list():
        found = getattr(volume, "labels", {}) or {}
        pk, proof = found.get(LABEL_VOLUME, ""), found.get(LABEL_VOLUME_PROOF)
        if proof and pk.isascii() and pk.isdigit() and volume.name not in mounted:
            held[int(pk)] = (volume.name, proof)
    ids = sorted(held)
    deleted: set[int] = set()
    try:
        for start in range(0, len(ids), BATCH):
            answer = client.volumes_deleted({pk: held[pk][1] for pk in ids[start : start + BATCH]})
            deleted.update(int(pk) for pk in answer["deleted"])
    except PanelError as exc:  # asked again at the next reconcile
        log.warning("deleted volumes: the panel did not answer: %s", exc)
        return []
    removed = []
    for pk in sorted(deleted & set(held)):  # only what it asked about
        name = held[pk][0]
        try:
            engine.volume_remove(name)  # never forced: a Conflict while a container mounts it
        except EngineError as exc:
            log.warning("volume %s: deleted on the panel, not removed: %s", name, exc)
            continue
        removed.append(name)
    return removed
