"""Network endpoints: create, list, inspect, connect, disconnect, remove, prune.

Networks are the engine's bridge (or overlay) networks. A container joins one or more of them
(created on several through ``EndpointsConfig``, or ``connect``-ed later, running or not:
a new interface and its names, live). The operator's networks belong to the ``default``
tenant; each tenant's default bridge (``bridge.<tenant>``) is never pruned.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING, Any

from engine.dockerapi.create import endpoint_config
from engine.dockerapi.filters import labels_match, request_filters
from engine.dockerapi.http import APIError, Request, Response, Router, json_response, no_content
from engine.errors import Conflict, NotFound
from engine.networks.manager import OverlayOptions
from engine.networks.model import DEFAULT_NETWORK_PREFIX, Network, NetworkJoin

if TYPE_CHECKING:
    from engine.engine import Engine

OVERLAY_OPTIONS = ("hostpanel.peers", "hostpanel.underlay-ip", "hostpanel.vni")
"""What ``-o`` may set on an overlay network: the other hosts' underlay addresses, ours, the VNI."""
_CREATE_FIELDS = {
    "Name",
    "CheckDuplicate",
    "Driver",
    "Internal",
    "Attachable",
    "Ingress",
    "IPAM",
    "EnableIPv6",
    "EnableIPv4",
    "Options",
    "Labels",
    "Scope",
    "ConfigOnly",
    "ConfigFrom",
}


def network_json(network: Network, endpoints: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A network as Docker shows it; ``endpoints`` (id -> the engine's endpoint) fill ``Containers``."""
    config: dict[str, str] = {"Subnet": network.subnet}
    if network.gateway:
        config["Gateway"] = network.gateway
    if network.ip_range and network.ip_range != network.subnet:
        config["IPRange"] = network.ip_range
    prefix = network.subnet.partition("/")[2]
    containers = {
        cid: {
            "Name": ep.get("name", ""),
            "EndpointID": cid,
            "MacAddress": "",
            "IPv4Address": f"{ep['ip']}/{prefix}" if ep.get("ip") else "",
            "IPv6Address": "",
        }
        for cid, ep in (endpoints or {}).items()
    }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
        "Internal": network.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": _options_of(network),
        "Labels": dict(network.labels),
    }


def _options_of(network: Network) -> dict[str, str]:
    if network.driver != "overlay":
        return {}
    return {
        "hostpanel.peers": ",".join(network.peers),
        "hostpanel.underlay-ip": network.underlay_ip,
        "hostpanel.vni": str(network.vni),
    }


def parse_create(body: Any) -> dict[str, Any]:
    """``POST /networks/create``'s body as the engine's create arguments; 400 for what it cannot make."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise APIError(400, f"unknown field {unknown[0]!r} in the network create request")
    name = body.get("Name")
    if not name or not isinstance(name, str):
        raise APIError(400, "Name is required: docker network create NAME")
    driver = body.get("Driver") or "bridge"
    if driver not in ("bridge", "overlay"):
        raise APIError(400, f"network driver {driver!r} is not supported: use bridge or overlay")
    for flag in ("EnableIPv6", "Ingress", "ConfigOnly"):
        if body.get(flag):
            raise APIError(400, f"{flag} is not supported by this engine's networks")
    if (body.get("ConfigFrom") or {}).get("Network"):
        raise APIError(400, "ConfigFrom is not supported by this engine's networks")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise APIError(400, "Labels must be a JSON object of strings")
    options = body.get("Options") or {}
    if options and driver != "overlay":
        first = sorted(options)[0]
        raise APIError(403, f"Options.{first} is not allowed: driver options are the engine's to choose")
    subnet, ip_range = _ipam(body.get("IPAM") or {}, overlay=driver == "overlay")
    return {
        "name": name,
        "driver": driver,
        "internal": bool(body.get("Internal")),
        "subnet": subnet,
        "labels": labels,
        "overlay": overlay_options(options, ip_range) if driver == "overlay" else None,
    }


def overlay_options(options: dict[str, Any], ip_range: str | None) -> OverlayOptions:
    """An overlay network's ``-o hostpanel.peers=A,B -o hostpanel.underlay-ip=X -o hostpanel.vni=N``."""
    unknown = sorted(set(options) - set(OVERLAY_OPTIONS))
    if unknown:
        allowed = ", ".join(OVERLAY_OPTIONS)
        raise APIError(403, f"Options.{unknown[0]} is not allowed: an overlay network takes only {allowed}")
    peers = tuple(p.strip() for p in str(options.get("hostpanel.peers", "")).split(",") if p.strip())
    if not peers:
        raise APIError(
            400,
            "an overlay network needs -o hostpanel.peers=ADDR[,ADDR...]: the other hosts' underlay addresses",
        )
    vni_text = str(options.get("hostpanel.vni", "")).strip()
    if vni_text and not vni_text.isdigit():
        raise APIError(400, f"hostpanel.vni {vni_text!r} must be a number (1-16777215)")
    return OverlayOptions(
        peers=peers,
        underlay_ip=str(options.get("hostpanel.underlay-ip", "")).strip() or None,
        vni=int(vni_text) if vni_text else None,
        ip_range=ip_range,
    )


def _ipam(ipam: dict[str, Any], *, overlay: bool) -> tuple[str | None, str | None]:
    """The one IPv4 subnet an IPAM section may ask for, and (overlay) this host's range of it.

    A bridge's gateway is its subnet's first address; an overlay network has none.
    """
    if ipam.get("Driver") not in (None, "", "default"):
        raise APIError(400, f"IPAM driver {ipam['Driver']!r} is not supported: use the default")
    if ipam.get("Options"):
        raise APIError(400, "IPAM options are not supported")
    configs = ipam.get("Config") or []
    if len(configs) > 1:
        raise APIError(400, "a network has one subnet here: give at most one IPAM config")
    if not configs:
        return None, None
    config = configs[0]
    if set(config) - {"Subnet", "Gateway", "IPRange", "AuxiliaryAddresses"} or config.get(
        "AuxiliaryAddresses"
    ):
        raise APIError(400, "IPAM config: only Subnet, Gateway and (overlay) IPRange are supported")
    subnet = config.get("Subnet")
    if not subnet:
        raise APIError(400, "IPAM config: Subnet is required")
    try:
        network = ipaddress.IPv4Network(subnet, strict=False)
    except ValueError:
        raise APIError(400, f"invalid subnet {subnet!r}: give an IPv4 CIDR such as 10.10.0.0/24") from None
    gateway = config.get("Gateway")
    first = str(network.network_address + 1)
    if gateway and overlay:
        raise APIError(400, "an overlay network has no gateway: leave --gateway out")
    if gateway and gateway != first:
        raise APIError(400, f"Gateway {gateway!r}: the gateway is the subnet's first address, {first}")
    ip_range = config.get("IPRange") or None
    if ip_range and not overlay and ip_range != subnet:
        raise APIError(400, "IPRange is for overlay networks (each host's share of the subnet)")
    return str(subnet), ip_range if overlay else None


def register(router: Router, engine: Engine) -> None:
    """Add the network endpoints for ``engine`` to ``router``."""

    def find(ref: str) -> Network:
        with contextlib.suppress(NotFound):
            return engine.network(ref)
        matches = [
            n for n in engine.network_list() if n.id == ref or (len(ref) >= 3 and n.id.startswith(ref))
        ]
        if len(matches) != 1:
            raise APIError(404, f"network {ref} not found")
        return matches[0]

    def shown(network: Network) -> dict[str, Any]:
        with contextlib.suppress(NotFound):
            return network_json(network, engine.networks.endpoints(network.name))
        return network_json(network)

    @router.route("POST", "/networks/create")
    def create(request: Request) -> Response:
        args = parse_create(request.json())
        network = engine.network_create(
            args["name"],
            subnet=args["subnet"],
            driver=args["driver"],
            internal=args["internal"],
            labels=args["labels"],
            overlay=args["overlay"],
        )
        return json_response({"Id": network.id, "Warning": ""}, 201)

    @router.route("GET", "/networks")
    def list_networks(request: Request) -> Response:
        filters = request_filters(request, ("name", "id", "label", "driver", "type", "scope", "dangling"))
        result = []
        for network in engine.network_list():
            if filters.get("name") and not any(n in network.name for n in filters["name"]):
                continue
            if filters.get("id") and not any(network.id.startswith(i) for i in filters["id"]):
                continue
            if filters.get("driver") and network.driver not in filters["driver"]:
                continue
            if filters.get("scope") and "local" not in filters["scope"]:
                continue
            if filters.get("type") and "custom" not in filters["type"]:
                continue
            if not labels_match(network.labels, filters.get("label", [])):
                continue
            if filters.get("dangling") and not _dangling_matches(engine, network, filters["dangling"]):
                continue
            result.append(shown(network))
        return json_response(result)

    @router.route("GET", "/networks/{id}")
    def inspect(request: Request) -> Response:
        return json_response(shown(find(request.params["id"])))

    @router.route("DELETE", "/networks/{id}")
    def remove(request: Request) -> Response:
        engine.network_remove(find(request.params["id"]).name)
        return no_content()

    @router.route("POST", "/networks/{id}/connect")
    def connect(request: Request) -> Response:
        return _one_network(engine, find(request.params["id"]), request, "connect")

    @router.route("POST", "/networks/{id}/disconnect")
    def disconnect(request: Request) -> Response:
        return _one_network(engine, find(request.params["id"]), request, "disconnect")

    @router.route("POST", "/networks/prune")
    def prune(request: Request) -> Response:
        filters = request_filters(request, ("label",))
        deleted = []
        for network in engine.network_list():
            if network.name.startswith(DEFAULT_NETWORK_PREFIX):
                continue
            if not labels_match(network.labels, filters.get("label", [])):
                continue
            with contextlib.suppress(Conflict, NotFound):  # in use, or gone meanwhile
                engine.network_remove(network.name)
                deleted.append(network.name)
        return json_response({"NetworksDeleted": deleted or None})


def _dangling_matches(engine: Engine, network: Network, values: list[str]) -> bool:
    unused = not engine.networks.endpoints(network.name)
    return all((v.lower() in ("1", "true")) == unused for v in values)


_CONNECT_FIELDS = {"Container", "EndpointConfig"}
_DISCONNECT_FIELDS = {"Container", "Force"}


def _one_network(engine: Engine, network: Network, request: Request, verb: str) -> Response:
    """Connect a container to ``network`` (with ``EndpointConfig.Aliases``) or disconnect it."""
    body = request.json()
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - (_CONNECT_FIELDS if verb == "connect" else _DISCONNECT_FIELDS))
    if unknown:
        raise APIError(400, f"unknown field {unknown[0]!r} in the network {verb} request")
    ref = body.get("Container")
    if not ref or not isinstance(ref, str):
        raise APIError(400, "Container is required")
    container = engine.get(ref)
    if verb == "disconnect":
        engine.disconnect(container.id, network.name)
        return no_content()
    aliases = endpoint_config(body.get("EndpointConfig"), "EndpointConfig").aliases
    engine.connect(container.id, NetworkJoin(network.name, aliases))
    return no_content(200)
