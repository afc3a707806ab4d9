"""``HostConfig.Links`` on the operator's socket, as dockerd treats them on a user-defined network:
names the new container may use for others on its own network.

docker-compose 1.x sends them for ``run`` (a link to each running container of the service:
``<project>_<service>_1:<service>``, ``...:<project>_<service>_1``, ``...:<service>_1``). The
engine resolves a container's name, its aliases and its short id on its network, and has no
per-container names; so a link is accepted only to a container on the new container's own
(user-defined) network, and an alias that network does not already resolve to that container is
answered with a warning in the create response instead of a name. Anything else is a 403 naming
``HostConfig.Links``. The tenants' door still refuses every link (``create.py``).
"""

from __future__ import annotations

from typing import Any

from engine.dockerapi.http import APIError
from engine.engine import Engine
from engine.errors import InvalidSpec, NotFound
from engine.networks.model import DEFAULT_NETWORK_PREFIX

FIELD = "HostConfig.Links"


def take_links(body: Any) -> tuple[Any, list[tuple[str, str]]]:
    """The create body without ``HostConfig.Links``, and the links as ``(target, alias)`` pairs.

    ``"name"`` links under its own name, ``"name:alias"`` under ``alias``; a malformed entry is a
    400 naming the field. A body that is not an object is returned as it is (the parser refuses it).
    """
    if not isinstance(body, dict) or not isinstance(body.get("HostConfig"), dict):
        return body, []
    host = dict(body["HostConfig"])
    raw = host.pop("Links", None)
    if raw is None:
        return body, []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise APIError(400, f"{FIELD} must be a list of 'container[:alias]' strings")
    links: list[tuple[str, str]] = []
    for item in raw:
        target, _, alias = item.partition(":")
        target = target.lstrip("/")
        alias = alias.rsplit("/", 1)[-1] or target  # dockerd's form is /target:/self/alias
        if not target or not alias:
            raise APIError(400, f"{FIELD}: invalid link {item!r}; use 'container[:alias]'")
        links.append((target, alias))
    return {**body, "HostConfig": host}, links


def check_links(engine: Engine, links: list[tuple[str, str]], network: str, tenant: str) -> list[str]:
    """Refuse links that leave ``network`` (or ``tenant``); the warnings for aliases it does not
    resolve."""
    if not links:
        return []
    if network in ("none", "bridge", "host") or network.startswith(DEFAULT_NETWORK_PREFIX):
        raise APIError(
            403, f"{FIELD} is refused: legacy links are not supported; use a network and its aliases"
        )
    warnings: list[str] = []
    for target, alias in links:
        try:
            container = engine.get(target)
        except (NotFound, InvalidSpec):
            container = None
        if container is None or container.tenant != tenant:
            raise APIError(400, f"{FIELD}: could not get container for {target}")
        if network not in (a["network"] for a in container.attachments()):
            raise APIError(
                403,
                f"{FIELD} is refused: {target} is not on network {network}; a link names only "
                "containers of the new container's own network",
            )
        known = [a for att in container.attachments() if att["network"] == network for a in att["aliases"]]
        if alias not in (container.name, container.short_id, *known):
            warnings.append(f"link alias {alias!r} is not resolvable here; reach {target} by its name")
    return warnings
