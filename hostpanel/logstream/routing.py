"""WebSocket routes of live logs (included by hostpanel.asgi)."""

from __future__ import annotations

from django.urls import re_path

from hostpanel.logstream.consumers import LogConsumer

websocket_urlpatterns = [
    re_path(r"^ws/logs/(?P<key>\d+)/$", LogConsumer.as_asgi()),
    re_path(r"^ws/logs/(?P<kind>[a-z][a-z0-9_]*)/(?P<key>[A-Za-z0-9_.\-]+)/$", LogConsumer.as_asgi()),
]
