"""WebSocket routes of the terminal (included by hostpanel.asgi)."""

from __future__ import annotations

from django.urls import re_path

from hostpanel.terminal.consumers import ExecConsumer

websocket_urlpatterns = [
    re_path(r"^ws/containers/(?P<replica_id>\d+)/exec/$", ExecConsumer.as_asgi()),
]
