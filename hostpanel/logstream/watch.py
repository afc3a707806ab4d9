"""The watch protocol between a viewer's consumer and a host agent's log follower.

Both speak on the host's own layer (:func:`hostpanel.logstream.layer.host_layer`). A consumer
sends ``logs.watch`` to the group :data:`WATCH_GROUP` there with the replica and the container's
name; that is a lease, renewed every LEASE_RENEW seconds while the viewer stays and dropped
LEASE_SECONDS after the last renewal (hostpanel/agent/follower.py keeps it). Its first one names
``reply_to``, the consumer's channel on that layer, which the backfill goes to.
"""

from __future__ import annotations

LEASE_SECONDS = 60.0
LEASE_RENEW = 20.0
WATCH_GROUP = "logagent"  # on a host's own layer: its follower listens there
