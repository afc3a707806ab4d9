"""What changes in domains, for the edge above (it connects here; domains never import it)."""

from __future__ import annotations

from django.dispatch import Signal

# A change alters what is routed (a domain verified or removed): the routing table is published.
routing_changed = Signal()
