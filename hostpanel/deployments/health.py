"""The health check rule: one place for its shape, defaults and bounds (API, dashboard, agent).

A release's ``health_check`` is one of::

    {"command": ["test", "-f", "/ready"]}
    {"http": {"port": 8080, "path": "/healthz"}}
    {"tcp": {"port": 5432}}

plus optional ``interval`` and ``timeout`` (seconds) and ``retries``, bounded so
that probes cannot stall their host: ``0 < timeout <= interval <= 300`` and
``1 <= retries <= 10``. An omitted timeout is 5 s, or the interval if shorter.
"""

from __future__ import annotations

import re
from typing import Any

from hostpanel.errors import InvalidRequest

MAX_INTERVAL = 300.0  # seconds (5 minutes)
MAX_RETRIES = 10
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
HEALTH_DEFAULTS: dict[str, Any] = {
    "interval": DEFAULT_INTERVAL,
    "timeout": DEFAULT_TIMEOUT,
    "retries": DEFAULT_RETRIES,
}
BOUNDS_TEXT = f"0 < timeout <= interval <= {MAX_INTERVAL:g} seconds, 1 <= retries <= {MAX_RETRIES}"
SHAPE_TEXT = (
    'give exactly one of "command" (list of strings), "http" ({"port": N, "path": "/..."}) '
    'or "tcp" ({"port": N}), and optionally "interval", "timeout" (seconds) and "retries"'
)
PATH_RE = re.compile(r"^/[\x21-\x7e]{0,1023}$")  # visible ASCII, no spaces or line breaks
KINDS = ("command", "http", "tcp")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def effective(hc: dict[str, Any]) -> dict[str, Any]:
    """``hc`` with its defaults filled in (an omitted timeout never exceeds the interval)."""
    interval = hc.get("interval", DEFAULT_INTERVAL)
    timeout = hc.get("timeout", min(DEFAULT_TIMEOUT, interval) if _number(interval) else DEFAULT_TIMEOUT)
    return {**hc, "interval": interval, "timeout": timeout, "retries": hc.get("retries", DEFAULT_RETRIES)}


def validate_health_check(hc: Any) -> None:
    """Raise InvalidRequest (a 400) naming the field and its allowed range unless ``hc`` is valid."""
    if not isinstance(hc, dict) or set(hc) - {*KINDS, "interval", "timeout", "retries"}:
        raise InvalidRequest(f"health_check: {SHAPE_TEXT}")
    if sum(kind in hc for kind in KINDS) != 1:
        raise InvalidRequest(f"health_check: {SHAPE_TEXT}")
    if "command" in hc and not (
        isinstance(hc["command"], list) and hc["command"] and all(isinstance(a, str) for a in hc["command"])
    ):
        raise InvalidRequest("health_check.command: give a non-empty list of strings")
    if "http" in hc:
        http = hc["http"]
        if not isinstance(http, dict) or set(http) - {"port", "path"} or not _port(http.get("port")):
            raise InvalidRequest('health_check.http: give {"port": 1-65535, "path": "/..."}')
        if "path" in http and not (isinstance(http["path"], str) and PATH_RE.match(http["path"])):
            raise InvalidRequest(
                "health_check.http.path: give a path starting with /, visible ASCII, "
                "no spaces, at most 1024 characters"
            )
    if "tcp" in hc:
        tcp = hc["tcp"]
        if not isinstance(tcp, dict) or set(tcp) != {"port"} or not _port(tcp["port"]):
            raise InvalidRequest('health_check.tcp: give {"port": 1-65535}')
    values = effective(hc)
    interval, timeout, retries = values["interval"], values["timeout"], values["retries"]
    if not _number(interval) or not 0 < interval <= MAX_INTERVAL:
        raise InvalidRequest(
            f"health_check.interval: give seconds, more than 0 and at most {MAX_INTERVAL:g} ({BOUNDS_TEXT})"
        )
    if not _number(timeout) or not 0 < timeout <= interval:
        raise InvalidRequest(
            f"health_check.timeout: give seconds, more than 0 and at most the interval "
            f"({interval:g} s) ({BOUNDS_TEXT})"
        )
    if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= MAX_RETRIES:
        raise InvalidRequest(
            f"health_check.retries: give a whole number from 1 to {MAX_RETRIES} ({BOUNDS_TEXT})"
        )
