"""End to end: a build requested through the API runs on a real host agent and its output reaches a WebSocket.

The consumer runs in this process (Channels' communicator) on the real Redis channel
layer; the agent subprocess runs the build in its engine and publishes the lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from hostpanel.builds.models import Build
from hostpanel.logstream.routing import websocket_urlpatterns
from hostpanel.tenants.models import Role
from tests.hostpanel.builds.conftest import context_tar, plain
from tests.hostpanel.e2e.conftest import LiveTenant, agents, celery_to, live_tenant, redis_url  # noqa: F401
from tests.hostpanel.factories import UserFactory
from tests.stack import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

DOCKERFILE = """\
FROM busybox AS make
RUN sleep 4; for i in 1 2 3 4 5; do echo "line-$i"; sleep 0.2; done; echo built > /artifact
FROM busybox
COPY --from=make /artifact /artifact
CMD ["cat", "/artifact"]
"""


def test_build_output_reaches_a_websocket_live_and_the_image_is_recorded(
    live_tenant: Callable[[str, str, str, str], LiveTenant],  # noqa: F811
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.VAR_DIR = tmp_path / "var"  # the panel's (tests.stack.serve_panel): it serves the upload
    developer = live_tenant("build", "shop", "build-dev", Role.DEVELOPER).member
    api = APIClient()
    api.force_authenticate(developer)
    context = SimpleUploadedFile("context.tar", context_tar({"Dockerfile": DOCKERFILE}))
    r = api.post("/api/v1/tenants/shop/builds/", {"name": "web:1", "context": context}, format="multipart")
    assert r.status_code == 201, r.json()
    build_id = r.json()["id"]
    wait_for(lambda: Build.objects.get(pk=build_id).status == "running", 30, "the agent to start the build")
    app = URLRouter(websocket_urlpatterns)

    async def watch() -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(app, f"/ws/logs/build/{build_id}/")
        communicator.scope["user"] = developer
        connected, _ = await communicator.connect()
        assert connected
        lines: list[dict[str, Any]] = []
        try:
            while not any(x["text"] == "line-5" for x in lines):
                message = await communicator.receive_json_from(timeout=30)
                if message["type"] == "lines":
                    lines += message["lines"]
        finally:
            await communicator.disconnect()
        return lines

    lines = async_to_sync(watch)()
    assert [x["text"] for x in lines if x["text"].startswith("line-")][-3:] == ["line-3", "line-4", "line-5"]
    assert {x["stream"] for x in lines if x["text"].startswith("line-")} == {"stdout"}
    wait_for(lambda: Build.objects.get(pk=build_id).status != "running", 60, "the build to finish")
    body = api.get(f"/api/v1/tenants/shop/builds/{build_id}/").json()
    assert (body["status"], body["image"], body["host"]) == ("succeeded", "shop/web:1", "build-h1"), body
    assert {"stream": "stdout", "text": "line-1"} in plain(body["output"])
    outsider = UserFactory(username="build-outsider")

    async def refused() -> bool:
        communicator = WebsocketCommunicator(app, f"/ws/logs/build/{build_id}/")
        communicator.scope["user"] = outsider
        connected, _ = await communicator.connect()
        if connected:
            message = await communicator.receive_output(timeout=5)
            await communicator.disconnect()
            return message.get("type") == "websocket.close"
        return True

    assert async_to_sync(refused)()
