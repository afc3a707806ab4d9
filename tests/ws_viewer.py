"""A WebSocket client for end-to-end tests: ``python -m tests.ws_viewer URL CA_FILE COOKIE LIVE``.

autobahn (daphne's own WebSocket library) on asyncio, in a process of its own (the test process has
txaio on Twisted already). It connects to ``URL`` (``wss://``, trusting ``CA_FILE``; the origin is
the URL's) with the ``Cookie`` header ``COOKIE``, and prints each JSON message received, one a line,
until ``LIVE`` lines came after ``{"type": "ready"}``, the socket closed, or 30 s without a message.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from urllib.parse import urlsplit

from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol


async def main(url: str, ca_file: str, cookie: str, live: int) -> int:
    parts = urlsplit(url)
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    class Viewer(WebSocketClientProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, is_binary: bool) -> None:
            inbox.put_nowait(json.loads(payload))

        def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
            inbox.put_nowait({"type": "closed", "code": code})

    factory = WebSocketClientFactory(url, origin=f"https://{parts.netloc}", headers={"Cookie": cookie})
    factory.protocol = Viewer
    context = ssl.create_default_context(cafile=ca_file)
    _, viewer = await asyncio.get_running_loop().create_connection(
        factory, parts.hostname, parts.port, ssl=context, server_hostname=parts.hostname
    )
    after_ready = -1
    try:
        while after_ready < live:
            message = await asyncio.wait_for(inbox.get(), 30)
            print(json.dumps(message), flush=True)
            if message["type"] == "closed":
                return 1
            if message["type"] == "ready":
                after_ready = 0
            elif message["type"] == "lines" and after_ready >= 0:
                after_ready += len(message["lines"])  # type: ignore[arg-type]
    finally:
        viewer.sendClose()
        await asyncio.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
