"""What happens to hosts, for the apps above that hold work on one (builds, the scheduler in
deployments/placement.py): they connect here, so the hosts app never imports them
(import-linter's layers, pyproject.toml)."""

from __future__ import annotations

from django.dispatch import Signal

# host=Host: its agent registered again (a restart), so the work that agent was running is lost.
agent_restarted = Signal()
# host=Host: marked down for missing heartbeats (inside the transaction that marks it): its
# stateless replicas move, its builds fail.
host_down = Signal()
# host=Host: draining or evacuating (inside a transaction): its movable replicas are to move off
# it, rolled as deploys are (deployments/host_moves.py); sent again while it drains, idempotent.
# Receivers answer how many movable replicas are still on the host (0: it has drained).
host_moving_off = Signal()
# (no arguments; outside any transaction) hosts' room changed: a host registered, came back up,
# went down or was uncordoned, or the periodic host checks ran. Pending replicas are placed.
room_changed = Signal()
# host_id=int: its agent's heartbeat reports what it runs; receivers answer {replica id: generation}
# of the replicas placed on the host, which the report is fenced against (fencing.py).
placements_asked = Signal()
# host_id=int: its agent beat (POST /internal/v1/host/heartbeat):
# work waiting for the host is sent again (builds: its queued builds not sent yet). A receiver's
# error is logged, never the heartbeat's.
host_beat = Signal()
# (no arguments; outside any transaction) the periodic host checks ran (services.watch_hosts:
# `manage.py watchhosts` on the panel): work that waits on time or on other replicas goes a step
# further (rolls, stacks' waiting services). A receiver's error is logged.
checked = Signal()
