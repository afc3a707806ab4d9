"""A service's digest: equal digests mean its containers can be left alone on a redeploy."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from engine.compose.model import Service

# What does not shape a container: where it sits in the file, how many there are (scaling adds
# or removes containers, it does not change the others), and when it starts relative to others.
_IGNORED = ("line", "replicas", "depends_on")


def service_digest(service: Service) -> str:
    """A stable sha256 hex of everything in ``service`` that shapes its containers.

    A ``build:`` service's digest covers the build definition, not the context's files: a
    caller that builds should also compare the resulting image id.
    """
    data: dict[str, Any] = dataclasses.asdict(service)
    for key in _IGNORED:
        data.pop(key)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
