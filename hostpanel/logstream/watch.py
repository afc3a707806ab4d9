"""The watch protocol between a viewer's consumer and a host agent's log follower.

A consumer sends ``logs.watch`` to the group :func:`agent_group` of the container's
host; that is a lease, renewed every LEASE_RENEW seconds while the viewer stays and
dropped LEASE_SECONDS after the last renewal (hostpanel/agent/follower.py keeps it).
"""

from __future__ import annotations

import re

LEASE_SECONDS = 60.0
LEASE_RENEW = 20.0


def agent_group(host_name: str) -> str:
    """The Channels group the log follower of ``host_name`` listens on."""
    return "logagent." + re.sub(r"[^A-Za-z0-9_\-.]", "_", host_name)[:80]
