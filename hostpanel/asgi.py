"""The ASGI entry point (daphne ``hostpanel.asgi:application``).

HTTP goes to Django; WebSockets go through session authentication and an
origin check to the (still empty) URL router that the live-logs issue fills.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")

# Django must be set up before anything imports models (channels.auth does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from hostpanel.logstream.routing import websocket_urlpatterns as log_routes  # noqa: E402
from hostpanel.terminal.routing import websocket_urlpatterns as terminal_routes  # noqa: E402

websocket_urlpatterns: list[object] = [*log_routes, *terminal_routes]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
