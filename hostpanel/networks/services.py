"""Business rules of tenant networks: create within the limit, delete when unused, the default one.

Every tenant has a network named ``default`` (made on first need by
:func:`default_network`) that new apps join unless they say otherwise, so
``web`` reaches ``db`` by name with no setup. A network's subnet and VNI are
unique across all tenants (a host's engine refuses overlapping subnets); each
host gives addresses from its own slice of the subnet (:func:`host_range`).
Which apps are on a network is read from their releases (``Release.networks``)
through the tenant's reverse relations: this layer imports no deployments code.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from engine.errors import InvalidSpec
from engine.networks.manager import MAX_NETWORKS, validate_alias
from hostpanel.audit.services import Actor, audited
from hostpanel.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from hostpanel.networks.models import DEFAULT_NAME, NETWORK_NAME_RE, Network, NetworkSlot
from hostpanel.tenants import units
from hostpanel.tenants.access import require_role
from hostpanel.tenants.locks import lock_tenant
from hostpanel.tenants.models import Role, Tenant

_NAME = re.compile(NETWORK_NAME_RE)
# The engine's own network names, which would be ambiguous in an app's spec.
RESERVED_NAMES = ("none", "host", "bridge")
_ALLOCATION_TRIES = 5


@dataclass(frozen=True)
class Pool:
    """Where networks' subnets and VNIs come from (settings HOSTPANEL_NETWORK_*)."""

    subnets: ipaddress.IPv4Network
    prefix: int
    host_prefix: int
    vni_first: int
    vni_last: int

    @classmethod
    def from_settings(cls) -> Pool:
        first, _, last = str(settings.HOSTPANEL_NETWORK_VNI_RANGE).partition("-")
        return cls(
            subnets=ipaddress.IPv4Network(settings.HOSTPANEL_NETWORK_POOL),
            prefix=int(settings.HOSTPANEL_NETWORK_PREFIX),
            host_prefix=int(settings.HOSTPANEL_NETWORK_HOST_PREFIX),
            vni_first=int(first),
            vni_last=int(last or first),
        )

    @property
    def slots(self) -> int:
        """How many hosts one network can span (slices of its subnet)."""
        return 2 ** (self.host_prefix - self.prefix)


def validate_name(name: str) -> str:
    """``name`` if a tenant may call a network so, else InvalidRequest naming the rule."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"name: invalid network name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise InvalidRequest(f"name: the network name {name!r} is reserved; choose another")
    return name


# ---- queries ------------------------------------------------------------------------
def visible_networks(actor: Actor, tenant: Tenant) -> QuerySet[Network]:
    """The tenant's networks (its default one included, made now if it was never needed yet)."""
    require_role(actor, tenant, Role.VIEWER)
    default_network(tenant)
    return Network.objects.filter(tenant=tenant)


def get_network(actor: Actor, tenant: Tenant, name: str) -> Network:
    """The tenant's network ``name``; NotFound for an unknown one (another tenant's is unknown)."""
    require_role(actor, tenant, Role.VIEWER)
    if name == DEFAULT_NAME:
        return default_network(tenant)
    network = Network.objects.filter(tenant=tenant, name=name).first()
    if network is None:
        raise NotFound(f"no network {name!r} in tenant {tenant.slug!r}")
    return network


def resolve_names(tenant: Tenant, names: Iterable[str]) -> dict[str, Network]:
    """The tenant's networks by name (``default`` made if needed); InvalidRequest naming unknown ones."""
    wanted = list(dict.fromkeys(names))
    found = {n.name: n for n in Network.objects.filter(tenant=tenant, name__in=wanted)}
    missing = [n for n in wanted if n not in found and n != DEFAULT_NAME]
    if missing:  # checked before the default network is made: a bad name creates nothing
        raise InvalidRequest(
            f"networks: tenant {tenant.slug!r} has no network(s) {', '.join(missing)}; create them first",
            {"networks": missing},
        )
    if DEFAULT_NAME in wanted and DEFAULT_NAME not in found:
        found[DEFAULT_NAME] = default_network(tenant)
    return found


def network_users(network: Network) -> list[str]:
    """Names of the apps whose current release, or a replica's release (a roll), joins ``network``."""
    users = []
    for app in network.tenant.apps.select_related("current_release").prefetch_related("replicas__release"):
        releases = [app.current_release, *(r.release for r in app.replicas.all())]
        if any(r is not None and network.name in joined_names(r.networks) for r in releases):
            users.append(app.name)
    return users


def joined_names(joins: list[dict[str, Any]] | None) -> list[str]:
    """The network names of a ``Release.networks`` value."""
    return [str(j["name"]) for j in joins or []]


MAX_ALIASES = 16
MAX_JOINS = MAX_NETWORKS - 1  # the engine's most per container, less the outbound bridge


def normalize_joins(value: object) -> list[dict[str, Any]]:
    """An app's ``networks`` as ``[{"name": ..., "aliases": [...]}]``, from names or such objects.

    InvalidRequest naming what is wrong (an unknown key, a bad name or alias, a network twice);
    whether the tenant has the networks is :func:`resolve_names`'s check.
    """
    if not isinstance(value, list):
        raise InvalidRequest('networks: give a list of network names or {"name": ..., "aliases": [...]}')
    if len(value) > MAX_JOINS:
        raise InvalidRequest(f"networks: an app joins at most {MAX_JOINS} networks, not {len(value)}")
    joins: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequest('networks: give a list of network names or {"name": ..., "aliases": [...]}')
        unknown = sorted(set(item) - {"name", "aliases"})
        if unknown:
            raise InvalidRequest(f"networks: unknown key(s) {', '.join(unknown)}; use name and aliases")
        name = item["name"]
        if name != DEFAULT_NAME:
            try:
                validate_name(name)
            except InvalidRequest as exc:
                raise InvalidRequest(f"networks: {exc.message.removeprefix('name: ')}") from None
        aliases = item.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InvalidRequest(f"networks: aliases of {name!r}: give a list of host names")
        if len(aliases) > MAX_ALIASES:
            raise InvalidRequest(f"networks: at most {MAX_ALIASES} aliases per network")
        for alias in aliases:
            try:  # the engine's own rule, so the host never refuses an accepted alias
                validate_alias(alias)
            except InvalidSpec as exc:
                raise InvalidRequest(f"networks: {exc}") from None
        if any(j["name"] == name for j in joins):
            raise InvalidRequest(f"networks: {name!r} is given twice")
        joins.append({"name": name, "aliases": list(dict.fromkeys(aliases))})
    return joins


# ---- changes ------------------------------------------------------------------------
def default_network(tenant: Tenant) -> Network:
    """The tenant's ``default`` network, made on first need (by the system: not counted against
    the limit, not audited as a member's act)."""
    network = Network.objects.filter(tenant=tenant, name=DEFAULT_NAME).first()
    if network is not None:
        return network
    try:
        return _allocate(tenant, DEFAULT_NAME, internal=False, is_default=True)
    except Conflict:  # made meanwhile by a concurrent request
        return Network.objects.get(tenant=tenant, name=DEFAULT_NAME)


def create_network(actor: Actor, tenant: Tenant, name: str, *, internal: bool = False) -> Network:
    """A new network of the tenant, with a subnet and VNI of the panel's pool.

    InvalidRequest for a bad name, Conflict if the tenant has one of that name,
    QuotaExceeded past HOSTPANEL_NETWORKS_PER_TENANT; nothing is made then.
    """
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "network.create", tenant) as entry:
        validate_name(name)
        with transaction.atomic():
            lock_tenant(tenant)  # one count at a time
            if Network.objects.filter(tenant=tenant, name=name).exists():
                raise Conflict(f"network {name!r} exists already in {tenant.slug!r}")
            _check_limit(tenant, name)
            network = _allocate(tenant, name, internal=internal, is_default=name == DEFAULT_NAME)
        entry.obj = network
    return network


def delete_network(actor: Actor, network: Network) -> None:
    """Delete a network no app uses (Conflict naming the apps otherwise); its hosts remove it at
    their next reconcile (agent/remote.py)."""
    tenant = network.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "network.delete", tenant, network), transaction.atomic():
        users = network_users(network)
        if users:
            raise Conflict(
                f"network {network.name!r} is used by app(s) {', '.join(users)}; deploy them without it",
                {"apps": users},
            )
        network.delete()


def _check_limit(tenant: Tenant, name: str) -> None:
    """QuotaExceeded if one more network takes the tenant past the limit; its default network counts
    whether it was made already or not (it will be, at the first app)."""
    limit = int(settings.HOSTPANEL_NETWORKS_PER_TENANT)
    names = set(Network.objects.filter(tenant=tenant).values_list("name", flat=True))
    have = len(names | ({DEFAULT_NAME} - {name}))
    if have + 1 > limit:
        over = {
            "resource": "networks",
            "limit": limit,
            "requested": have + 1,
            "over_by": have + 1 - limit,
            "unit": "count",
            "asked": 1,
            "left": max(limit - have, 0),
            "text": units.over_text("networks", 1, max(limit - have, 0)),
        }
        raise QuotaExceeded(
            f"over the quota of tenant {tenant.slug!r}: {over['text']}; delete a network first",
            {"over": [over]},
        )


def _allocate(tenant: Tenant, name: str, *, internal: bool, is_default: bool) -> Network:
    """Create the row with the lowest free subnet and VNI of the pool (retried if a concurrent
    create took them first); Conflict if the tenant has the name, QuotaExceeded if the pool is full."""
    pool = Pool.from_settings()
    for _ in range(_ALLOCATION_TRIES):
        subnet, vni = _free_subnet(pool), _free_vni(pool)
        try:
            with transaction.atomic():
                if Network.objects.filter(tenant=tenant, name=name).exists():
                    raise Conflict(f"network {name!r} exists already in {tenant.slug!r}")
                return Network.objects.create(
                    tenant=tenant, name=name, subnet=subnet, vni=vni, internal=internal, is_default=is_default
                )
        except IntegrityError:
            continue
    raise Conflict("the network pool is busy; try again")


def _free_subnet(pool: Pool) -> str:
    used = set(Network.objects.values_list("subnet", flat=True))
    for candidate in pool.subnets.subnets(new_prefix=pool.prefix):
        if str(candidate) not in used:
            return str(candidate)
    raise QuotaExceeded(
        f"the panel's network pool {pool.subnets} is full; an administrator widens HOSTPANEL_NETWORK_POOL"
    )


def _free_vni(pool: Pool) -> int:
    used = set(
        Network.objects.filter(vni__gte=pool.vni_first, vni__lte=pool.vni_last).values_list("vni", flat=True)
    )
    for vni in range(pool.vni_first, pool.vni_last + 1):
        if vni not in used:
            return vni
    raise QuotaExceeded(
        f"no free VNI left in {pool.vni_first}-{pool.vni_last}; widen HOSTPANEL_NETWORK_VNI_RANGE"
    )


# ---- hosts --------------------------------------------------------------------------
def host_range(network: Network, host_id: int) -> str:
    """The slice of ``network``'s subnet that host ``host_id`` gives addresses from (its engine's
    ``ip_range``), taken the first time the host needs it. Conflict if every slice is taken."""
    pool = Pool.from_settings()
    subnet = ipaddress.IPv4Network(network.subnet)
    slices = list(subnet.subnets(new_prefix=max(pool.host_prefix, subnet.prefixlen)))
    for _ in range(_ALLOCATION_TRIES):
        mine = NetworkSlot.objects.filter(network=network, host_id=host_id).first()
        if mine is not None:
            return str(slices[mine.slot])
        used = set(NetworkSlot.objects.filter(network=network).values_list("slot", flat=True))
        free = next((i for i in range(len(slices)) if i not in used), None)
        if free is None:
            raise Conflict(
                f"network {network.name!r} spans {len(slices)} hosts already, its most; "
                "an administrator lowers HOSTPANEL_NETWORK_HOST_PREFIX"
            )
        try:
            with transaction.atomic():
                NetworkSlot.objects.create(network=network, host_id=host_id, slot=free)
        except IntegrityError:
            continue
    raise Conflict(f"network {network.name!r}: hosts are taking slices concurrently; try again")
