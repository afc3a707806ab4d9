"""``GET /containers/json`` encoded from cached pieces: `docker ps` lists often, containers change rarely.

Each list item is its fixed part (:func:`render.summary_fixed`, JSON-encoded once per change of
what it reads) followed by its state and status, encoded on every request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from engine.dockerapi import render
from engine.dockerapi.record import DockerRecord
from engine.runtime.model import Container


class ListEncoder:
    """Encodes list items, keeping each container's encoded fixed part while its inputs are equal."""

    def __init__(self) -> None:
        self._fixed: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        self._lock = threading.Lock()

    def item(self, container: Container, record: DockerRecord, now: datetime) -> bytes:
        """One list item as JSON: the same document as :func:`render.summary_json`."""
        inputs = render.summary_inputs(container, record)
        with self._lock:
            cached = self._fixed.get(container.id)
        if cached is None or cached[0] != inputs:
            # Without the closing brace: the state follows.
            cached = (inputs, json.dumps(render.summary_fixed(container, record)).encode()[:-1])
            with self._lock:
                self._fixed[container.id] = cached
        state = render.summary_state(container, record, now)
        return b'%s, "State": %s, "Status": %s}' % (
            cached[1],
            encode_basestring_ascii(state["State"]).encode(),
            encode_basestring_ascii(state["Status"]).encode(),
        )

    def keep_only(self, cids: Iterable[str]) -> None:
        """Forget the containers not in ``cids`` (call it with every container there is)."""
        keep = set(cids)
        with self._lock:
            for cid in self._fixed.keys() - keep:
                del self._fixed[cid]


def json_array(items: list[bytes]) -> bytes:
    """Encoded JSON documents as one JSON array (a response body)."""
    return b"[" + b", ".join(items) + b"]\n"
