"""What happens to hosts, for the apps above that hold work on one (builds): they connect here,
so the hosts app never imports them (import-linter's layers, pyproject.toml)."""

from __future__ import annotations

from django.dispatch import Signal

# host=Host: its agent registered again (a restart), so the work that agent was running is lost.
agent_restarted = Signal()
# host=Host: marked down for missing heartbeats (inside the transaction that marks it).
host_down = Signal()
# host=Host: draining or evacuating (inside a transaction): its movable replicas are to move off
# it, rolled as deploys are (deployments/host_moves.py); sent again while it drains, idempotent.
host_moving_off = Signal()
