"""The edge's panel endpoints (mounted at /edge/)."""

from __future__ import annotations

from django.urls import path

from hostpanel.edge.views import ask

urlpatterns = [path("ask", ask, name="edge-ask")]
