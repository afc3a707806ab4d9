"""Fencing: no replica runs on two hosts at once, even after a network partition.

Every placement of a replica bumps its ``generation``; the agent labels the container it
makes with that generation. A host that was cut off keeps its containers running (its agent
cannot hear the panel) while the panel declares it dead and places its replicas elsewhere,
with a higher generation. When it comes back, its heartbeat reports the (replica,
generation) pairs it runs and the answer names those it must stop: a replica no longer
placed on this host, or placed anew (another generation). Its reconcile applies the same
rule to every container (:func:`is_current`).
"""

from __future__ import annotations

from collections.abc import Mapping

LABEL_GENERATION = "org.hostpanel.generation"


def label_generation(labels: Mapping[str, str]) -> int:
    """The generation a container was made for (0: made before generations existed, or unreadable)."""
    try:
        return int(labels.get(LABEL_GENERATION, "0"))
    except ValueError:
        return -1  # nobody's generation: fenced


def is_current(placed: Mapping[str, int], replica_id: str, generation: int) -> bool:
    """Whether a container of ``replica_id`` made for ``generation`` may run on a host where
    ``placed`` holds the replicas placed now ({replica id: current generation})."""
    return placed.get(replica_id) == generation


def fenced(placed: Mapping[str, int], running: Mapping[str, int]) -> list[str]:
    """The replica ids of ``running`` ({replica id: generation of its container}) whose containers
    must stop on this host: not placed here any more, or placed here anew since."""
    return sorted(rid for rid, gen in running.items() if not is_current(placed, rid, gen))
