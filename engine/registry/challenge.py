"""Parse ``WWW-Authenticate`` challenges (RFC 7235) as registries send them.

Examples::

    Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"
    Basic realm="Registry"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: the scheme (lowercase) and its parameters (keys lowercase)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        """The ``realm`` parameter ('' when absent)."""
        return self.params.get("realm", "")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in a ``WWW-Authenticate`` header value, in order.

    Unknown or malformed parts are skipped rather than raising: a client picks
    the first scheme it understands.
    """
    challenges: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end() :]
        params: dict[str, str] = {}
        while rest:
            pm = _PARAM_RE.match(rest)
            if not pm:
                break
            quoted, plain = pm.group(2), pm.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (plain or "")
            params[pm.group(1).lower()] = value
            rest = rest[pm.end() :]
        challenges.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return challenges


def pick_challenge(header: str) -> Challenge | None:
    """The challenge to answer: Bearer when offered, else Basic, else None."""
    found = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for c in found:
            if c.scheme == scheme:
                return c
    return None
