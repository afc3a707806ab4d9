"""The Docker Engine API, spoken by HostPanel (no Django here).

``http`` is the transport (a threaded HTTP/1.1 server on a unix socket or TCP+TLS, a small
router, JSON, chunked streams and hijacked connections); ``daemon`` wires the operator's
endpoints onto an :class:`engine.Engine`. Every request is translated into the engine's own
spec: nothing a client sends reaches crun as-is.
"""

import os
from pathlib import Path

API_VERSION = "1.44"
"""The API version we advertise; clients negotiate down to it through ``/_ping`` and ``/version``."""

MIN_API_VERSION = "1.24"
"""The oldest version whose requests we accept (docker-py and compose 1.29 still send 1.24-1.41)."""

DEFAULT_SOCKET = Path("/run/hostpanel/docker.sock")


def default_socket() -> Path:
    """The operator's socket: ``$HOSTPANEL_DOCKER_SOCKET``, else ``/run/hostpanel/docker.sock``.

    Here, not in ``daemon``, so that `hpctl` finds the socket without importing the API.
    """
    return Path(os.environ.get("HOSTPANEL_DOCKER_SOCKET") or DEFAULT_SOCKET)
