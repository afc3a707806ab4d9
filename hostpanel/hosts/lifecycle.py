"""The host lifecycle's state machine (pure: no database): cordon, uncordon, drain, evacuate.

A host's ``lifecycle`` is what admins asked of it; its ``state`` (up, down) is what its
heartbeats say. Only an ``active`` host takes new replicas. ``drain`` rolls the host's
movable replicas onto other hosts (a new one is ready elsewhere before an old one stops);
replicas with volumes are pinned (their data lives on this host's disk) and stay.
``evacuate`` drains, then takes the host out of service: its pinned replicas are stopped
and its silence is not a death (no rescheduling, it is expected). ``uncordon`` makes any of
them active again (Incus' "restore"): pinned replicas start again.
"""

from __future__ import annotations

from hostpanel.errors import Conflict
from hostpanel.hosts.models import Host

L = Host.Lifecycle

ACTIONS = ("cordon", "uncordon", "drain", "evacuate")

# action -> (the lifecycles it may start from, the lifecycle it leads to)
_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "cordon": (frozenset({L.ACTIVE, L.CORDONED}), L.CORDONED),
    "uncordon": (frozenset(L.values), L.ACTIVE),
    "drain": (frozenset({L.ACTIVE, L.CORDONED, L.DRAINING, L.DRAINED}), L.DRAINING),
    "evacuate": (frozenset({L.ACTIVE, L.CORDONED, L.DRAINING, L.DRAINED, L.EVACUATING}), L.EVACUATING),
}
# what a lifecycle in progress becomes once nothing movable is left on the host
_SETTLED = {L.DRAINING: L.DRAINED, L.EVACUATING: L.EVACUATED}


def next_lifecycle(current: str, action: str) -> str:
    """The lifecycle a host in ``current`` goes to on ``action``; Conflict (saying what to do) when
    the action does not apply there, ValueError for an unknown action."""
    if action not in _TRANSITIONS:
        raise ValueError(f"unknown host action {action!r}: use one of {', '.join(ACTIONS)}")
    allowed, target = _TRANSITIONS[action]
    if current not in allowed:
        raise Conflict(
            f"cannot {action} a host that is {current}: uncordon it first, then {action} it"
            if current in (L.EVACUATING, L.EVACUATED)
            else f"cannot {action} a host that is {current}"
        )
    return target


def available_actions(current: str) -> list[str]:
    """The actions that apply to a host in ``current`` and change something (the staff page's buttons)."""
    return [a for a, (allowed, target) in _TRANSITIONS.items() if current in allowed and target != current]


def settled(current: str, movable_left: int) -> str:
    """``current``, or what a drain or evacuation in progress becomes once ``movable_left`` is 0."""
    if movable_left == 0 and current in _SETTLED:
        return _SETTLED[current]
    return current


def schedulable(lifecycle: str) -> bool:
    """Whether new replicas may be placed on a host in ``lifecycle``."""
    return lifecycle == L.ACTIVE


def moving_off(lifecycle: str) -> bool:
    """Whether the host's movable replicas are to be moved elsewhere."""
    return lifecycle in (L.DRAINING, L.EVACUATING)


def out_of_service(lifecycle: str) -> bool:
    """Whether the host runs nothing (evacuated): its pinned replicas are stopped and its
    missing heartbeats are expected (it is not declared dead)."""
    return lifecycle in (L.EVACUATING, L.EVACUATED)
