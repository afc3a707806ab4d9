"""The ``filters`` query parameter of list and prune endpoints, parsed and matched.

Clients send ``{"label": ["a=b"], "dangling": ["true"]}`` (the older form maps each value to
``true``: ``{"label": {"a=b": true}}``). A filter an endpoint does not know is a 400 naming it,
never silently ignored: a prune with a filter we dropped would remove more than asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.dockerapi.http import APIError, Request

Filters = dict[str, list[str]]


def parse_filters(raw: Any, allowed: Iterable[str]) -> Filters:
    """``raw`` (the decoded JSON) as ``{name: [values]}``; 400 for a malformed or unknown filter."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise APIError(400, 'filters must be a JSON object such as {"label": ["key=value"]}')
    known = set(allowed)
    result: Filters = {}
    for name, values in raw.items():
        if name not in known:
            raise APIError(
                400, f"invalid filter {name!r}: this endpoint filters by {', '.join(sorted(known))}"
            )
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise APIError(400, f"invalid filter {name!r}: its values must be strings")
        result[name] = list(values)
    return result


def request_filters(request: Request, allowed: Iterable[str]) -> Filters:
    """The request's ``filters`` parameter, parsed (see :func:`parse_filters`)."""
    return parse_filters(request.json_arg("filters"), allowed)


def bool_filter(filters: Filters, name: str) -> bool | None:
    """A true/false filter (``dangling``): None when absent; 400 for another value."""
    values = filters.get(name)
    if not values:
        return None
    lowered = {v.lower() for v in values}
    if not lowered <= {"1", "true", "0", "false"} or len({v in ("1", "true") for v in lowered}) != 1:
        raise APIError(400, f"invalid filter {name!r}: use {name}=true or {name}=false")
    return lowered.pop() in ("1", "true")


def labels_match(labels: Mapping[str, str] | None, wanted: Iterable[str]) -> bool:
    """Whether ``labels`` carry every ``key`` or ``key=value`` of ``wanted``."""
    labels = labels or {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True
