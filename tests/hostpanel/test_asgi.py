"""The ASGI application routes HTTP to Django and has a WebSocket route table."""

from __future__ import annotations

from channels.routing import ProtocolTypeRouter


def test_asgi_application_routes_http_and_websocket() -> None:
    from hostpanel.asgi import application

    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "websocket"}
