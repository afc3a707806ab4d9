"""``/networks/...`` for tenants: the two networks the panel gives every tenant, in Docker's shape.

The panel has no networks service yet: a tenant's container is on its own ``bridge`` (the tenant's
bridge on each host, the panel's ``network: bridge``) or on ``none``. Those two are listed and
inspected as Docker shows its predefined networks, so ``docker network ls`` and compose's checks of
an external network work. Creating, connecting, disconnecting and removing networks are a 400 (404
for a name that is not there) saying that custom networks come with the networks API (issue 14).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from engine.dockerapi.filters import labels_match, request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, json_response
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.lookup import identity_of
from hostpanel.tenants.models import Tenant

NETWORKS = {"bridge": "bridge", "none": "null"}  # name -> Docker driver
LATER = (
    "custom networks come with the panel's networks API (issue 14); until then a container is on"
    " its tenant's bridge network (the default) or on none"
)


def network_id(tenant: Tenant, name: str) -> str:
    """A stable id of the tenant's network ``name`` (64 hex digits, like Docker's)."""
    return hashlib.sha256(f"hostpanel-network:{tenant.slug}:{name}".encode()).hexdigest()


def network_json(tenant: Tenant, name: str) -> dict[str, Any]:
    """The tenant's network ``name`` as ``GET /networks/{id}`` shows it."""
    return {
        "Name": name,
        "Id": network_id(tenant, name),
        "Created": tenant.created_at.isoformat(),
        "Scope": "local",
        "Driver": NETWORKS[name],
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": []},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {},
        "Labels": {},
    }


def find_network(tenant: Tenant, ref: str) -> str:
    """The name of the tenant's network ``ref`` (a name, an id or a unique id prefix); 404 otherwise."""
    if ref in NETWORKS:
        return ref
    matches = [n for n in NETWORKS if ref and network_id(tenant, n).startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise APIError(404, f"network {ref} not found")


def register(router: Router) -> None:
    """Add the network endpoints of the tenants' door to ``router``."""
    routes: list[tuple[str, str, Callable[[Request], Any]]] = [
        ("GET", "/networks", list_networks),
        ("POST", "/networks/create", create_network),
        ("POST", "/networks/prune", prune_networks),
        ("GET", "/networks/{id}", inspect_network),
        ("DELETE", "/networks/{id}", remove_network),
        ("POST", "/networks/{id}/connect", connect_network),
        ("POST", "/networks/{id}/disconnect", connect_network),
    ]
    for method, pattern, handler in routes:
        router.add(method, pattern, translated(handler))


def list_networks(request: Request) -> Response:
    """``GET /networks`` (filters: name, id, driver, type, scope, label)."""
    tenant = identity_of(request).tenant
    filters = request_filters(request, ("name", "id", "driver", "type", "scope", "label"))
    shown = []
    for name in NETWORKS:
        doc = network_json(tenant, name)
        if any(n not in name for n in filters.get("name", [])):
            continue
        if any(not doc["Id"].startswith(i) for i in filters.get("id", [])):
            continue
        if any(d != doc["Driver"] for d in filters.get("driver", [])):
            continue
        if any(t != "builtin" for t in filters.get("type", [])):
            continue
        if any(s != "local" for s in filters.get("scope", [])):
            continue
        if not labels_match({}, filters.get("label", [])):
            continue
        shown.append(doc)
    return json_response(shown)


def inspect_network(request: Request) -> Response:
    """``GET /networks/{id}``."""
    tenant = identity_of(request).tenant
    return json_response(network_json(tenant, find_network(tenant, request.params["id"])))


def create_network(request: Request) -> Response:
    """``POST /networks/create``: not yet (issue 14)."""
    identity_of(request)
    raise APIError(400, LATER)


def remove_network(request: Request) -> Response:
    """``DELETE /networks/{id}``: the predefined ones stay; there are no others yet."""
    name = find_network(identity_of(request).tenant, request.params["id"])
    raise APIError(403, f"{name} is a pre-defined network and cannot be removed")


def connect_network(request: Request) -> Response:
    """``POST /networks/{id}/connect|disconnect``: a container's network is chosen at create."""
    find_network(identity_of(request).tenant, request.params["id"])
    raise APIError(400, f"a container's network is chosen when it is created (--network); {LATER}")


def prune_networks(request: Request) -> Response:
    """``POST /networks/prune``: nothing to prune (the predefined networks stay)."""
    identity_of(request)
    request_filters(request, ("label", "until"))
    return json_response({"NetworksDeleted": None})
