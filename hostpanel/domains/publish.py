"""The one seam to the edge: tell every host's proxy that the routing table changed.

``hostpanel.edge.services.publish_routes`` (the edge part) builds the table from
``hostnames.app_hostnames`` and sends it to the hosts; until that part is merged this is a no-op.
"""

from __future__ import annotations

from django.db import transaction

try:
    from hostpanel.edge.services import publish_routes as _edge_publish
except ModuleNotFoundError:  # the edge part is not merged into this branch yet
    _edge_publish = None


def publish_routes() -> None:
    """Send the current routing table to every host (now; callers use :func:`after_commit`)."""
    if _edge_publish is not None:
        _edge_publish()


def after_commit() -> None:
    """Publish once the surrounding transaction commits (so the hosts see the committed table)."""
    transaction.on_commit(lambda: publish_routes())
