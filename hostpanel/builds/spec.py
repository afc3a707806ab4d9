"""What the panel and a host agent agree on about a build: its plain spec and the bounds of its output.

The panel makes the spec of a Build row (:func:`hostpanel.builds.services.spec_of`; the internal
API's claim answers it as JSON) and a host runs it (:mod:`hostpanel.agent.build_runner`). The agent
imports these from here, never the reverse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STORED_LINES = 5000  # the last output lines a Build row keeps
LINE_MAX = 16 * 1024  # characters of one output line the panel takes


@dataclass(frozen=True)
class BuildSpec:
    """What a host needs to run a build (no row): the internal API's claim answers it as JSON."""

    id: int
    tenant: str
    name: str
    reference: str
    time_limit: int
    dockerfile: str = "Dockerfile"
    dockerfile_text: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    limits: dict[str, int] | None = None  # the tenant's quota (tenants.limits.quota_limits); None: none
    git_url: str = ""
    context_path: str = ""  # a directory under the tenant's roots (the agent checks it again under its own)
    context_archive: bool = False  # an uploaded context tar

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-able values (the claim's answer)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildSpec:
        """The spec of a claim's answer (fields this version does not know are left out)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
