"""Networks of one engine instance: records on disk, IPAM, attach/detach of containers, names, rules.

On disk, below ``<root>/networks``::

    <name>/network.json     the Network record
    <name>/endpoints.json   {container id: {name, ip, aliases, hostname, hosts, ports}}
    .egress.json            per-tenant egress allow-lists (see engine.networks.egress)
    .egress-protected.json  protected hosts and the ports they keep open to containers
    .lock                   serialises every change of this instance's networks

Container network namespaces are bind mounts at ``<root>/run/netns/<id>``.
A subnet is picked under a host-wide lock and checked against the host's
routes, so several engine instances on one machine never share one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import Conflict, InvalidSpec, NotFound, RuntimeFailure
from engine.events import EventJournal
from engine.fsutil import atomic_write_json, file_lock, read_json
from engine.networks import egress, firewall, ipam, netlink
from engine.networks.hosts import HostsSection, hosts_text, merged_hosts_text
from engine.networks.model import (
    BRIDGE,
    DEFAULT_NETWORK_PREFIX,
    HOST,
    NONE,
    PRIVILEGED_NETWORKS,
    Attachment,
    Network,
    NetworkJoin,
    PortMapping,
    RemoteEndpoint,
    default_network_name,
)
from engine.networks.ports import check_duplicates, host_port_free
from engine.paths import EnginePaths
from engine.runtime.idmap import validate_tenant
from engine.runtime.oci_spec import HOST_NETNS

DRIVERS = ("bridge", "overlay")
HOST_LOCK = Path("/run/hostpanel/networks.lock")
OVERLAY_MTU = 1450
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ALIAS_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$")
RESERVED_NAMES = (NONE, HOST, BRIDGE, "default")
#: A container joins at most this many networks (eth0-eth9: the host veth names must fit 15 characters).
MAX_NETWORKS = 10

__all__ = ["MAX_NETWORKS", "NetworkManager", "NetworkNotFound", "OverlayOptions", "hosts_text"]


def link_prefixes(instance: str) -> tuple[str, str, str]:
    """Name prefixes of the bridges, veths and VXLAN devices of ``instance`` (15-char names fit)."""
    tag = hashlib.sha256(instance.encode()).hexdigest()[:5]
    return f"hb{tag}", f"hv{tag}", f"hx{tag}"


@dataclass(frozen=True)
class OverlayOptions:
    """How an overlay network reaches its other hosts."""

    peers: tuple[str, ...] = ()
    underlay_ip: str | None = None
    vni: int | None = None
    ip_range: str | None = None


def _check_overlay(
    name: str, subnet: ipaddress.IPv4Network, o: OverlayOptions, *, peerless: bool = False
) -> OverlayOptions:
    """Validate overlay options; fill in the VNI (derived from the name, so every host agrees).

    ``peerless``: no peers is fine (every member on this host for now; see ensure_overlay).
    """
    if not o.peers and not peerless:
        raise InvalidSpec("an overlay network needs at least one --peer (another host's underlay address)")
    for address in (*o.peers, *([o.underlay_ip] if o.underlay_ip else [])):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise InvalidSpec(f"invalid underlay address {address!r}: use an IPv4 address") from None
    vni = o.vni if o.vni is not None else int(hashlib.sha256(name.encode()).hexdigest()[:6], 16) or 1
    if not 1 <= vni <= 0xFFFFFF:
        raise InvalidSpec(f"invalid VNI {vni}: use 1-16777215")
    if o.ip_range is not None:
        ip_range = ipam.parse_subnet(o.ip_range) if "/" in o.ip_range else None
        if ip_range is None or not ip_range.subnet_of(subnet):
            raise InvalidSpec(f"--ip-range {o.ip_range} must be a CIDR range inside the subnet {subnet}")
    return OverlayOptions(peers=o.peers, underlay_ip=o.underlay_ip, vni=vni, ip_range=o.ip_range)


class NetworkNotFound(NotFound):
    """No network of that name (for that tenant)."""


def validate_network_name(name: str) -> str:
    """Return ``name`` if a tenant may create a network with it, else raise InvalidSpec."""
    if name in RESERVED_NAMES:
        raise InvalidSpec(f"the network name {name!r} is reserved; choose another")
    if not _NAME_RE.match(name):
        raise InvalidSpec(
            f"invalid network name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid host name, else raise InvalidSpec."""
    if not _ALIAS_RE.match(alias):
        raise InvalidSpec(f"invalid network alias {alias!r}: use a host name (letters, digits, '-', '.')")
    return alias


def host_nameservers(resolv: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's IPv4 nameservers that a container can use (loopback ones are useless inside)."""
    servers = []
    with contextlib.suppress(OSError):
        for line in resolv.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    addr = ipaddress.ip_address(fields[1])
                    if isinstance(addr, ipaddress.IPv4Address) and not addr.is_loopback:
                        servers.append(fields[1])
    return servers


def resolv_conf_text(servers: Sequence[str]) -> str:
    """/etc/resolv.conf for a container: the host's usable nameservers (HostPanel runs no DNS)."""
    if not servers:
        return "# no nameserver: the host has none a container can reach\n"
    return "".join(f"nameserver {s}\n" for s in servers) + "options ndots:0\n"


def _write_in_place(path: Path, text: str) -> None:
    """Rewrite a bind-mounted file without replacing its inode (a rename would not show inside).

    Unchanged files are left alone. The new text is written over the old and the
    file then cut to its length: truncating to zero first makes ext4 flush the
    file on close (its replace-by-truncate heuristic), about 2 ms per file, once
    per peer on every attach and detach.
    """
    data = text.encode()
    with contextlib.suppress(FileNotFoundError), open(path, "r+b") as f:
        if f.read() == data:
            return
        f.seek(0)
        f.write(data)
        f.truncate()


class NetworkManager:
    """Creates networks and attaches containers to them, for one engine instance."""

    def __init__(self, paths: EnginePaths, instance: str, pool: str | None = None) -> None:
        self.paths = paths
        self.instance = instance
        self.dir = paths.root / "networks"
        self.netns_dir = paths.run / "netns"
        # the pool new subnets come from: the argument, $HOSTPANEL_SUBNET_POOL, or 10.89.0.0/16
        self.pool = ipam.parse_subnet(pool or os.environ.get("HOSTPANEL_SUBNET_POOL") or ipam.DEFAULT_POOL)
        self.bridge_prefix, self.veth_prefix, self.vxlan_prefix = link_prefixes(instance)
        self.allow_lists = egress.ListsFile(self.dir / ".egress.json")
        self.protected = egress.ListsFile(self.dir / ".egress-protected.json")
        self.events = EventJournal(paths.events)

    def _event(self, network: Network, action: str, container: str = "") -> None:
        attributes = {"name": network.name, "type": network.driver}
        if container:
            attributes["container"] = container
        self.events.record("network", action, network.id, attributes, tenant=network.tenant)

    # ---- names of kernel objects ------------------------------------------------

    def netns_path(self, cid: str) -> Path:
        """Where container ``cid``'s network namespace is bind-mounted."""
        return self.netns_dir / cid

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.dir / ".lock")

    # ---- records ----------------------------------------------------------------
    def _record(self, name: str) -> Path:
        return self.dir / name / "network.json"

    def _endpoints_file(self, name: str) -> Path:
        return self.dir / name / "endpoints.json"

    def _endpoints(self, name: str) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = read_json(self._endpoints_file(name))
        except FileNotFoundError:
            return {}
        return data

    def get(self, name: str) -> Network:
        """The network called ``name``; NetworkNotFound if there is none."""
        if not name or "/" in name or name.startswith("."):
            raise NetworkNotFound(f"no such network: {name!r}")
        try:
            return Network.from_dict(read_json(self._record(name)))
        except FileNotFoundError:
            raise NetworkNotFound(f"no such network: {name} (see `hpctl network ls`)") from None

    def all(self, tenant: str | None = None) -> list[Network]:
        """Every network of this instance (of ``tenant`` only, if given), by name."""
        result = []
        if self.dir.exists():
            for d in sorted(self.dir.iterdir()):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError, ValueError):
                    net = Network.from_dict(read_json(d / "network.json"))
                    if tenant is None or net.tenant == tenant:
                        result.append(net)
        return result

    def endpoints(self, name: str) -> dict[str, dict[str, Any]]:
        """The containers attached to network ``name``: id -> {name, ip, aliases, ports, ...}."""
        self.get(name)
        return self._endpoints(name)

    # ---- networks ---------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        tenant: str,
        subnet: str | None = None,
        driver: str = "bridge",
        internal: bool = False,
        labels: dict[str, str] | None = None,
        overlay: OverlayOptions | None = None,
    ) -> Network:
        """Create a network: a bridge with a gateway address, its subnet and its firewall rules.

        ``driver="overlay"`` spans hosts: the bridge gets a VXLAN port (one VNI
        per network) that floods to the ``overlay.peers`` underlay addresses;
        its subnet must be given (the same on every host) and each host
        allocates from its own ``overlay.ip_range``. Overlay networks carry
        east-west traffic only (no gateway, outbound route or published ports).
        Raises InvalidSpec (bad name, driver, subnet or overlay options),
        Conflict (name taken, subnet overlapping another network or a host
        route), QuotaExceeded (pool exhausted) or RuntimeFailure; on error
        nothing is left behind.
        """
        validate_network_name(name)
        validate_tenant(tenant)
        with self._lock():
            return self._create_locked(
                name,
                tenant=tenant,
                subnet=subnet,
                driver=driver,
                internal=internal,
                labels=labels or {},
                overlay=overlay,
            )

    def _create_locked(
        self,
        name: str,
        *,
        tenant: str,
        subnet: str | None,
        driver: str,
        internal: bool,
        labels: dict[str, str],
        overlay: OverlayOptions | None = None,
        peerless: bool = False,
    ) -> Network:
        if driver not in DRIVERS:
            raise InvalidSpec(f"unknown network driver {driver!r}: use bridge or overlay")
        if driver == "overlay":
            if subnet is None:
                raise InvalidSpec("an overlay network needs --subnet (the same on every host)")
            overlay = _check_overlay(
                name, ipam.parse_subnet(subnet), overlay or OverlayOptions(), peerless=peerless
            )
            internal = True
        elif overlay is not None and overlay != OverlayOptions():
            raise InvalidSpec("--peer, --vni, --ip-range and --underlay-ip are for --driver overlay")
        else:
            overlay = None
        if self._record(name).exists():
            raise Conflict(f"a network named {name!r} already exists; choose another name")
        requested = ipam.parse_subnet(subnet) if subnet is not None else None
        net_id = secrets.token_hex(32)
        bridge = f"{self.bridge_prefix}{net_id[:7]}"
        HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(HOST_LOCK), contextlib.ExitStack() as undo:
            taken = [(f"network {n.name}", ipaddress.IPv4Network(n.subnet)) for n in self.all()]
            taken += netlink.host_networks()
            if requested is not None:
                ipam.check_no_overlap(requested, taken)
                chosen = requested
            else:
                chosen = ipam.allocate_subnet(self.pool, ipam.DEFAULT_PREFIX, [t for _, t in taken])
            network = Network(
                name=name,
                id=net_id,
                tenant=tenant,
                driver=driver,
                subnet=str(chosen),
                gateway="" if overlay is not None else str(ipam.gateway_of(chosen)),
                bridge=bridge,
                internal=internal,
                mtu=OVERLAY_MTU if overlay is not None else 1500,
                created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                labels=dict(labels),
            )
            if overlay is not None:
                network.vni = overlay.vni or 0
                network.vxlan = f"{self.vxlan_prefix}{net_id[:7]}"
                network.peers = list(overlay.peers)
                network.underlay_ip = overlay.underlay_ip or (
                    netlink.source_address_for(overlay.peers[0]) if overlay.peers else ""
                )
                network.ip_range = overlay.ip_range or str(chosen)
            (self.dir / name).mkdir(parents=True)
            undo.callback(shutil.rmtree, self.dir / name, True)
            netlink.create_bridge(bridge, network.gateway or None, chosen.prefixlen, network.mtu)
            undo.callback(netlink.delete_link, bridge)
            if network.vxlan:
                netlink.create_vxlan(
                    network.vxlan, bridge, network.vni, network.underlay_ip, network.peers, network.mtu
                )
                undo.callback(netlink.delete_link, network.vxlan)
            atomic_write_json(self._record(name), network.to_dict())
            atomic_write_json(self._endpoints_file(name), {})
            self._apply_rules()
            undo.pop_all()
        self._event(network, "create")
        return network

    def ensure_overlay(
        self,
        name: str,
        *,
        tenant: str,
        subnet: str,
        vni: int,
        peers: Sequence[str],
        underlay_ip: str | None = None,
        ip_range: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Network:
        """Create overlay network ``name`` or bring it to these settings, in place (idempotent).

        ``peers`` (the other hosts' underlay addresses; none is fine while
        every member runs here) are changed as VXLAN flood entries: the bridge
        stays and running containers keep their connections. ``ip_range`` (this
        host's share of ``subnet``) and ``labels`` are updated too. Raises
        InvalidSpec for bad values, Conflict if ``name`` exists with another
        tenant, driver, subnet or VNI, or if a container here has an address
        outside the new ``ip_range``; on error nothing changes.
        """
        validate_network_name(name)
        validate_tenant(tenant)
        wanted = _check_overlay(
            name,
            ipam.parse_subnet(subnet),
            OverlayOptions(tuple(dict.fromkeys(peers)), underlay_ip, vni, ip_range),
            peerless=True,
        )
        with self._lock():
            if not self._record(name).exists():
                return self._create_locked(
                    name,
                    tenant=tenant,
                    subnet=subnet,
                    driver="overlay",
                    internal=True,
                    labels=labels or {},
                    overlay=wanted,
                    peerless=True,
                )
            net = self.get(name)
            if (net.tenant, net.driver) != (tenant, "overlay"):
                raise Conflict(
                    f"network {name!r} exists as a {net.driver} network of tenant {net.tenant!r}; "
                    "choose another name"
                )
            if (ipaddress.IPv4Network(net.subnet), net.vni) != (ipaddress.IPv4Network(subnet), wanted.vni):
                raise Conflict(
                    f"network {name!r} exists with subnet {net.subnet} and VNI {net.vni}, not {subnet} and "
                    f"{wanted.vni}: remove it first (its containers too) to change them"
                )
            new_range = wanted.ip_range or net.ip_range
            outside = [
                ep["name"]
                for ep in self._endpoints(name).values()
                if ipaddress.IPv4Address(ep["ip"]) not in ipaddress.IPv4Network(new_range)
            ]
            if outside:
                raise Conflict(
                    f"containers {', '.join(sorted(outside))} of network {name!r} have addresses outside "
                    f"--ip-range {new_range}; remove them first"
                )
            if wanted.underlay_ip and wanted.underlay_ip != net.underlay_ip and net.underlay_ip:
                raise Conflict(
                    f"network {name!r} uses the underlay address {net.underlay_ip}, "
                    f"not {wanted.underlay_ip}: remove it first to change it"
                )
            if not netlink.link_exists(net.bridge):
                self._restore(net)
            self._set_peers(net, wanted.peers)
            updated = dataclasses.replace(
                net,
                peers=list(wanted.peers),
                ip_range=new_range,
                labels=dict(labels) if labels is not None else net.labels,
            )
            if updated != net:
                net = updated
                atomic_write_json(self._record(name), net.to_dict())
                self._event(net, "update")
            return net

    @staticmethod
    def _set_peers(net: Network, peers: Sequence[str]) -> None:
        """Make ``peers`` the VXLAN flood entries of ``net`` (in place); all or nothing."""
        added = [p for p in peers if p not in net.peers]
        removed = [p for p in net.peers if p not in peers]
        try:
            for peer in added:
                netlink.add_fdb_peer(net.vxlan, peer)
            for peer in removed:
                netlink.remove_fdb_peer(net.vxlan, peer)
        except RuntimeFailure:
            for peer in added:
                netlink.remove_fdb_peer(net.vxlan, peer)
            for peer in removed:
                netlink.add_fdb_peer(net.vxlan, peer)
            raise

    def _restore(self, net: Network) -> None:
        """Recreate a network's bridge, VXLAN port and rules (gone after a reboot or a teardown)."""
        subnet = ipaddress.IPv4Network(net.subnet)
        netlink.create_bridge(net.bridge, net.gateway or None, subnet.prefixlen, net.mtu)
        if net.vxlan:
            netlink.create_vxlan(net.vxlan, net.bridge, net.vni, net.underlay_ip, net.peers, net.mtu)
        self._apply_rules()

    def remove(self, name: str) -> Network:
        """Remove an unused network. Conflict if a container is attached; NetworkNotFound if unknown."""
        with self._lock():
            network = self.get(name)
            users = self._endpoints(name)
            if users:
                names = ", ".join(sorted(ep["name"] for ep in users.values()))
                raise Conflict(f"network {name} is in use by {names}; remove those containers first")
            if network.vxlan:
                netlink.delete_link(network.vxlan)
            netlink.delete_link(network.bridge)
            shutil.rmtree(self.dir / name, ignore_errors=True)
            self._apply_rules()
        self._event(network, "destroy")
        return network

    def _published(self, networks: Sequence[Network]) -> list[firewall.Published]:
        return [
            firewall.Published(PortMapping.from_dict(p), ep["ip"])
            for n in networks
            for ep in self._endpoints(n.name).values()
            for p in ep.get("ports", [])
        ]

    def _apply_rules(self) -> None:
        """Regenerate both tables from the records (network created or removed, teardown)."""
        networks = self.all()
        firewall.apply_ruleset(
            firewall.render_ruleset(
                self.instance,
                networks,
                self._published(networks),
                egress_allow=self.allow_lists.all(),
                protected=self.protected.all(),
                nameservers=host_nameservers(),
            )
        )

    # ---- egress policy ------------------------------------------------------------
    def egress_allow(self, tenant: str) -> tuple[str, ...]:
        """The ranges ``tenant``'s containers may reach besides the internet (empty by default)."""
        validate_tenant(tenant)
        return self.allow_lists.get(tenant)

    def set_egress_allow(self, tenant: str, cidrs: Sequence[str]) -> tuple[str, ...]:
        """Replace ``tenant``'s egress allow-list and apply it live to its networks' rules.

        By default containers cannot reach private, shared and link-local
        ranges (see engine.networks.egress); each range listed here opens
        that range to this tenant's bridge networks only. An empty list
        restores the default. Returns the stored (normalised) list. Raises
        InvalidSpec for a bad tenant or range, RuntimeFailure if nftables
        refuses (then the previous list and rules stay).
        """
        validate_tenant(tenant)
        wanted = egress.parse_allow_list(cidrs)
        with self._lock():
            before = self.allow_lists.all()
            self.allow_lists.write({**before, tenant: wanted})
            try:
                self._apply_rules()
            except RuntimeFailure:
                self.allow_lists.write(before)
                raise
        return wanted

    def _apply_published(self, added: Sequence[firewall.Published] | None = None) -> None:
        """Append ``added`` to the publish chain, or rewrite the chain from the records if None.

        If our tables are gone (`network teardown`, a host reboot), regenerate both.
        """
        script = (
            firewall.render_add_published(self.instance, added)
            if added is not None
            else firewall.render_replace_published(self.instance, self._published(self.all()))
        )
        try:
            firewall.apply_ruleset(script)
        except RuntimeFailure:
            self._apply_rules()

    def egress_protected(self) -> dict[str, tuple[str, ...]]:
        """The protected hosts: address -> the "PORT/PROTO"s containers may still reach there."""
        return self.protected.all()

    def set_egress_protected(self, entries: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """Replace the protected hosts and apply them live to every network's rules.

        A protected host (the panel, its Redis or database, another host of the
        pool, at whatever address) is reached by containers only on the ports
        listed for it (other tenants' published ports there), whatever a
        tenant's allow-list says. Returns the stored (normalised) entries.
        Raises InvalidSpec for a bad address or port, RuntimeFailure if
        nftables refuses (then the previous entries and rules stay).
        """
        wanted = egress.parse_protected(entries)
        with self._lock():
            before = self.protected.all()
            self.protected.write(wanted, keep_empty=True)
            try:
                self._apply_rules()
            except RuntimeFailure:
                self.protected.write(before, keep_empty=True)
                raise
        return wanted

    # ---- containers -------------------------------------------------------------
    def resolve(self, request: str, tenant: str, *, allow_privileged: bool = False) -> str:
        """The network name ``request`` means for ``tenant`` (``bridge`` -> the tenant's default).

        Raises InvalidSpec for ``host`` without ``allow_privileged``,
        NetworkNotFound for an unknown network or one of another tenant.
        """
        if request in PRIVILEGED_NETWORKS and not allow_privileged:
            raise InvalidSpec(
                f"network {request!r} is for operators only: it would share the host's network stack"
            )
        if request in (NONE, HOST):
            return request
        if request == BRIDGE:
            return default_network_name(tenant)
        network = self.get(request)
        if network.tenant != tenant:
            raise NetworkNotFound(
                f"no network {request!r} for tenant {tenant!r} (it belongs to another tenant)"
            )
        return request

    def attach(
        self,
        cid: str,
        *,
        name: str,
        hostname: str,
        tenant: str,
        network: str,
        aliases: Sequence[str] = (),
        ports: Sequence[PortMapping] = (),
        hosts_path: Path,
        allow_privileged: bool = False,
    ) -> Attachment:
        """Give container ``cid`` its network: a namespace, an address, names and published ports.

        ``network`` is ``none``, ``host``, ``bridge`` (the tenant's default,
        created on first use) or a network name. See :meth:`attach_all`.
        """
        return self.attach_all(
            cid,
            name=name,
            hostname=hostname,
            tenant=tenant,
            joins=(NetworkJoin(network, tuple(aliases)),),
            ports=ports,
            hosts_path=hosts_path,
            allow_privileged=allow_privileged,
        )[0]

    def attach_all(
        self,
        cid: str,
        *,
        name: str,
        hostname: str,
        tenant: str,
        joins: Sequence[NetworkJoin],
        ports: Sequence[PortMapping] = (),
        hosts_path: Path,
        allow_privileged: bool = False,
    ) -> tuple[Attachment, ...]:
        """Join container ``cid`` to each network of ``joins`` in order (eth0, eth1, ...).

        The first network with a gateway (a non-internal bridge) gives the
        default route and carries the published ``ports``; an overlay adds
        its subnet's route only. ``none`` and ``host`` stand alone. Writes the
        container's hosts file at ``hosts_path`` (the names of every network it
        is on) and updates those of the other containers on them. Raises
        InvalidSpec (bad alias, port, network list, privileged network),
        NetworkNotFound, Conflict (host port in use) or RuntimeFailure; on error
        nothing is left behind (no address, veth or namespace).
        """
        if not joins:
            raise InvalidSpec("no network given: use --network none for a container without one")
        if len(joins) > MAX_NETWORKS:
            raise InvalidSpec(f"a container joins at most {MAX_NETWORKS} networks, not {len(joins)}")
        for join in joins:
            for alias in join.aliases:
                validate_alias(alias)
        ports = tuple(ports)
        check_duplicates(ports)
        resolved = [self.resolve(j.name, tenant, allow_privileged=allow_privileged) for j in joins]
        if len(resolved) > 1 and (NONE in resolved or HOST in resolved):
            raise InvalidSpec("networks none and host cannot be combined with other networks")
        if len(set(resolved)) != len(resolved):
            raise InvalidSpec(f"a network is listed twice in {[j.name for j in joins]}: join each once")
        if resolved[0] in (NONE, HOST):
            return (self._no_namespace(resolved[0], joins[0], ports),)
        with self._lock():
            self._check_ports_free(ports)  # before the default network is made: bad input creates nothing
            for net_name in resolved:
                if net_name.startswith(DEFAULT_NETWORK_PREFIX) and not self._record(net_name).exists():
                    self._create_default(net_name, tenant)
            nets = [self.get(n) for n in resolved]
            publish_on = next((n for n in nets if n.gateway and not n.internal), None)
            if ports and publish_on is None:
                raise InvalidSpec(
                    "an overlay or internal network has no published ports; publish from a bridge network"
                )
            attachments: list[Attachment] = []
            with contextlib.ExitStack() as undo:
                for index, (net, join) in enumerate(zip(nets, joins, strict=True)):
                    own = self._endpoint(name, hostname, join.aliases, hosts_path, resolved, index)
                    if net is publish_on:
                        own["ports"] = [p.to_dict() for p in ports]
                    attachments.append(self._plug(cid, net, own, undo))
                self._rewrite_hosts(resolved)
                undo.pop_all()
        for net in nets:
            self._event(net, "connect", cid)
        hosts = merged_hosts_text(hostname, self._sections_of(cid, resolved, {}, {}))
        attachments[0] = dataclasses.replace(attachments[0], hosts=hosts)
        return tuple(attachments)

    def _no_namespace(self, network: str, join: NetworkJoin, ports: Sequence[PortMapping]) -> Attachment:
        if ports:
            raise InvalidSpec(f"cannot publish ports with network {network}: use a bridge network")
        if join.aliases:
            raise InvalidSpec(f"network aliases need a bridge network, not {network}")
        if network == HOST:
            return Attachment(
                network=HOST, netns_path=HOST_NETNS, resolv_conf=resolv_conf_text(host_nameservers())
            )
        return Attachment(network=NONE)

    def _create_default(self, name: str, tenant: str) -> None:
        self._create_locked(
            name,
            tenant=tenant,
            subnet=None,
            driver="bridge",
            internal=False,
            labels={"org.hostpanel.default": "true"},
        )

    @staticmethod
    def _endpoint(
        name: str,
        hostname: str,
        aliases: Sequence[str],
        hosts_path: Path,
        networks: Sequence[str],
        index: int,
    ) -> dict[str, Any]:
        """A new endpoint record (``networks``: every network of the container, in join order)."""
        return {
            "name": name,
            "hostname": hostname,
            "ip": "",
            "aliases": list(dict.fromkeys(aliases)),
            "hosts": str(hosts_path),
            "ports": [],
            "interface": f"eth{index}",
            "networks": list(networks),
        }

    def _veth_name(self, cid: str, interface: str) -> str:
        """The host end of a container's veth: eth0's keeps the historic name, ethN's ends in N."""
        index = interface.removeprefix("eth")
        return f"{self.veth_prefix}{cid[:7]}{'' if index == '0' else index}"

    def _plug(self, cid: str, net: Network, own: dict[str, Any], undo: contextlib.ExitStack) -> Attachment:
        """Give ``cid`` an address on ``net`` and its interface ``own["interface"]`` (under the lock).

        Creates the namespace with the first one, adds a veth to it for the
        others. Every step pushes its undo on ``undo``.
        """
        if not netlink.link_exists(net.bridge):
            self._restore(net)
        endpoints = self._endpoints(net.name)
        subnet = ipaddress.IPv4Network(net.subnet)
        last_file = self.dir / net.name / "last-address"
        last = last_file.read_text().strip() if last_file.exists() else None
        # round robin: an address just released (its veth may still be dying) is not reused at once
        within = ipaddress.IPv4Network(net.ip_range) if net.ip_range else None
        used = [ep["ip"] for ep in endpoints.values()]
        address = str(ipam.allocate_address(subnet, used, after=last, within=within))
        own["ip"] = address
        netns = self.netns_path(cid)
        veth = self._veth_name(cid, own["interface"])
        gateway = None if net.internal else (net.gateway or None)
        plug = netlink.VethPlug(
            veth, net.bridge, own["interface"], address, subnet.prefixlen, gateway, net.mtu
        )
        if not netns.exists():  # the first network; a container off every network keeps its own
            netlink.create_netns_with_veth(netns, plug)
            undo.callback(netlink.delete_netns, netns)
        else:
            netlink.add_veth_to_netns(netns, plug)
        undo.callback(netlink.delete_link, veth)
        endpoints[cid] = own
        atomic_write_json(self._endpoints_file(net.name), endpoints)
        last_file.write_text(address)
        undo.callback(self._drop_endpoint, net.name, cid)
        ports = tuple(PortMapping.from_dict(p) for p in own["ports"])
        if ports:
            self._apply_published([firewall.Published(p, address) for p in ports])
            undo.callback(self._apply_published)
        return Attachment(
            network=net.name,
            ip_address=address,
            netns_path=str(netns),
            ports=ports,
            resolv_conf=resolv_conf_text(host_nameservers()),
            aliases=tuple(own["aliases"]),
            interface=own["interface"],
        )

    def _drop_endpoint(self, network: str, cid: str) -> None:
        endpoints = self._endpoints(network)
        if endpoints.pop(cid, None) is not None:
            atomic_write_json(self._endpoints_file(network), endpoints)

    def _check_ports_free(self, ports: Sequence[PortMapping]) -> None:
        if not ports:
            return
        ours: list[tuple[PortMapping, str]] = []
        for n in self.all():
            for ep in self._endpoints(n.name).values():
                ours += [(PortMapping.from_dict(p), ep["name"]) for p in ep.get("ports", [])]
        for p in ports:
            for m, owner in ours:
                same_port = (m.protocol, m.host_port) == (p.protocol, p.host_port)
                if same_port and (m.host_ip == p.host_ip or "0.0.0.0" in (m.host_ip, p.host_ip)):
                    raise Conflict(
                        f"host port {p.host_port}/{p.protocol} is already published by container {owner}; "
                        "choose another host port"
                    )
            host_port_free(p)

    def _remote(self, network: str) -> list[dict[str, Any]]:
        try:
            data: list[dict[str, Any]] = read_json(self.dir / network / "remote.json")
        except FileNotFoundError:
            return []
        return data

    def remote_endpoints(self, name: str) -> tuple[RemoteEndpoint, ...]:
        """The other hosts' containers of network ``name`` (as last set), by name then address."""
        self.get(name)
        return tuple(
            RemoteEndpoint(e["name"], e["ip"], tuple(e.get("aliases", ()))) for e in self._remote(name)
        )

    def set_remote_endpoints(self, name: str, entries: Mapping[str, str] | Sequence[RemoteEndpoint]) -> None:
        """Tell an overlay network which containers run on its other hosts.

        ``entries`` is ``{name: address}`` or a sequence of RemoteEndpoint (a
        name may come several times, one per replica address). They replace the
        previous set and are written at once, in place, into the /etc/hosts of
        this host's containers on the network (no restart; there is no DNS
        server). Raises NetworkNotFound, InvalidSpec for a bad name or alias or
        an address outside the subnet (then nothing changes).
        """
        wanted = (
            [RemoteEndpoint(host, address) for host, address in entries.items()]
            if isinstance(entries, Mapping)
            else list(entries)
        )
        with self._lock():
            net = self.get(name)
            subnet = ipaddress.IPv4Network(net.subnet)
            remote: dict[tuple[str, str], dict[str, Any]] = {}
            for entry in wanted:
                if not isinstance(entry, RemoteEndpoint):
                    raise InvalidSpec(f"invalid remote endpoint {entry!r}: use RemoteEndpoint(name, ip)")
                validate_alias(entry.name)
                for alias in entry.aliases:
                    validate_alias(alias)
                try:
                    ip = ipaddress.IPv4Address(entry.ip)
                except ValueError:
                    raise InvalidSpec(f"invalid address {entry.ip!r} for {entry.name}") from None
                if ip not in subnet:
                    raise InvalidSpec(f"{entry.name} at {entry.ip} is outside the network's subnet {subnet}")
                remote[(entry.name, str(ip))] = {
                    "name": entry.name,
                    "ip": str(ip),
                    "aliases": list(dict.fromkeys(entry.aliases)),
                }
            atomic_write_json(self.dir / name / "remote.json", [remote[k] for k in sorted(remote)])
            self._rewrite_hosts([name])

    def _sections_of(
        self,
        cid: str,
        networks: Sequence[str],
        endpoints: dict[str, dict[str, dict[str, Any]]],
        remote: dict[str, list[dict[str, Any]]],
    ) -> list[HostsSection]:
        """The hosts-file sections of container ``cid`` on ``networks`` (caches filled as it goes)."""
        sections = []
        for net in networks:
            if net not in endpoints:
                endpoints[net] = self._endpoints(net)
                remote[net] = self._remote(net)
            own = endpoints[net].get(cid)
            if own is not None:
                others = [e for c, e in endpoints[net].items() if c != cid] + remote[net]
                sections.append(HostsSection(own, others))
        return sections

    def _rewrite_hosts(
        self, networks: Iterable[str], also: Sequence[tuple[str, dict[str, Any]]] = ()
    ) -> None:
        """Rewrite, in place, the hosts file of every container on ``networks`` (and of ``also``:
        (id, former endpoint) pairs of containers that just left one of them)."""
        endpoints: dict[str, dict[str, dict[str, Any]]] = {}
        remote: dict[str, list[dict[str, Any]]] = {}
        members: dict[str, tuple[dict[str, Any], list[str]]] = {
            cid: (ep, list(ep.get("networks") or [])) for cid, ep in also
        }
        for net in networks:
            endpoints[net], remote[net] = self._endpoints(net), self._remote(net)
            for cid, ep in endpoints[net].items():
                members[cid] = (ep, list(ep.get("networks") or [net]))  # records before issue 14: one
        for cid, (ep, joined) in members.items():
            sections = self._sections_of(cid, joined, endpoints, remote)
            _write_in_place(Path(ep["hosts"]), merged_hosts_text(ep["hostname"], sections))

    def _memberships(self, cid: str) -> dict[str, dict[str, Any]]:
        """Every network ``cid`` is on: network name -> its endpoint there (in join order)."""
        found = {n.name: self._endpoints(n.name).get(cid) for n in self.all()}
        joined = {n: ep for n, ep in found.items() if ep is not None}
        return dict(sorted(joined.items(), key=lambda item: int(item[1].get("interface", "eth0")[3:] or 0)))

    def networks_of(self, cid: str) -> list[str]:
        """The networks container ``cid`` is on, in the order of its interfaces."""
        return list(self._memberships(cid))

    def _set_networks(self, cid: str, networks: Sequence[str]) -> None:
        """Record ``networks`` as ``cid``'s network list in each of its endpoints."""
        for net in networks:
            endpoints = self._endpoints(net)
            if cid in endpoints:
                endpoints[cid]["networks"] = list(networks)
                atomic_write_json(self._endpoints_file(net), endpoints)

    def connect(
        self, cid: str, join: NetworkJoin, *, name: str, hostname: str, tenant: str, hosts_path: Path
    ) -> Attachment:
        """Join a container that already has its namespace (created, running or stopped) to one more network.

        Its new interface is the lowest free ethN; a bridge network gives the
        default route if it has none yet. Every hosts file of both sides
        follows at once. Raises NetworkNotFound, InvalidSpec (bad alias,
        ``none``/``host``, a container without its own namespace, too many
        networks), Conflict (already on it) or RuntimeFailure; on error
        nothing changes.
        """
        for alias in join.aliases:
            validate_alias(alias)
        resolved = self.resolve(join.name, tenant)
        if resolved in (NONE, HOST):
            raise InvalidSpec(f"cannot connect a container to network {resolved}: recreate it instead")
        netns = self.netns_path(cid)
        if not netns.exists():
            raise InvalidSpec(
                f"container {name} has no network namespace of its own (network none or host): "
                "recreate it with --network"
            )
        with self._lock():
            current = self._memberships(cid)
            if resolved in current:
                raise Conflict(f"container {name} is already connected to network {resolved}")
            if len(current) >= MAX_NETWORKS:
                raise InvalidSpec(
                    f"container {name} is on {MAX_NETWORKS} networks already, the most it can be"
                )
            if resolved.startswith(DEFAULT_NETWORK_PREFIX) and not self._record(resolved).exists():
                self._create_default(resolved, tenant)
            net = self.get(resolved)
            taken = {ep.get("interface", "eth0") for ep in current.values()}
            index = next(i for i in range(MAX_NETWORKS) if f"eth{i}" not in taken)
            networks = [*current, resolved]
            own = self._endpoint(name, hostname, join.aliases, hosts_path, networks, index)
            with contextlib.ExitStack() as undo:
                attachment = self._plug(cid, net, own, undo)
                self._set_networks(cid, networks)
                undo.callback(self._set_networks, cid, list(current))
                self._rewrite_hosts(networks)
                undo.pop_all()
        self._event(net, "connect", cid)
        return attachment

    def disconnect(self, cid: str, network: str, *, tenant: str) -> Attachment:
        """Take a container off one network: its interface there, address, published ports and names.

        The container keeps its other networks (and its namespace, even with
        none left). Returns what it had there. Raises NetworkNotFound,
        Conflict if it is not on it.
        """
        resolved = self.resolve(network, tenant)
        with self._lock():
            current = self._memberships(cid)
            own = current.pop(resolved, None)
            if own is None:
                raise Conflict(f"container {cid[:12]} is not connected to network {resolved}")
            netlink.delete_link(self._veth_name(cid, own.get("interface", "eth0")))
            self._drop_endpoint(resolved, cid)
            self._set_networks(cid, list(current))
            if own.get("ports"):
                self._apply_published()
            own["networks"] = list(current)
            self._rewrite_hosts([resolved, *current], also=[(cid, own)])
        self._event(self.get(resolved), "disconnect", cid)
        return Attachment(
            network=resolved,
            ip_address=own["ip"],
            ports=tuple(PortMapping.from_dict(p) for p in own.get("ports", [])),
            aliases=tuple(own.get("aliases", [])),
            interface=own.get("interface", "eth0"),
        )

    def rename_endpoint(self, cid: str, network: str, name: str) -> None:
        """A container on ``network`` is now called ``name``: its entry and every hosts file follow."""
        if network in ("", NONE, HOST):
            return
        with self._lock():
            endpoints = self._endpoints(network)
            if cid not in endpoints:
                return
            endpoints[cid]["name"] = name
            atomic_write_json(self._endpoints_file(network), endpoints)
            self._rewrite_hosts([network])

    def detach(self, cid: str, network: str) -> None:
        """Undo :meth:`attach` (see :meth:`release`)."""
        self.release(cid, [network])

    def release(self, cid: str, networks: Sequence[str]) -> None:
        """Undo :meth:`attach_all`: addresses, veths, namespace, published ports, hosts entries.

        Idempotent; networks the container is no longer on are skipped. The
        namespace goes even with no network left (all disconnected).
        """
        networks = [n for n in networks if n not in ("", NONE, HOST)]
        if not networks and not self.netns_path(cid).exists():
            return
        dropped: list[tuple[str, dict[str, Any]]] = []
        with self._lock():
            netns = self.netns_path(cid)
            had_netns = netns.exists()
            if had_netns:
                # Dropping the last reference destroys the namespace; the kernel then removes the
                # veth pairs in the background (deleting them here would cost ~20 ms on the remove path).
                netlink.delete_netns(netns)
            for network in networks:
                endpoints = self._endpoints(network)
                own = endpoints.pop(cid, None)
                if not had_netns:
                    interface = own.get("interface", "eth0") if own else "eth0"
                    netlink.delete_link(self._veth_name(cid, interface))
                if own is None:
                    continue
                if self._record(network).exists():
                    atomic_write_json(self._endpoints_file(network), endpoints)
                dropped.append((network, own))
            if any(own.get("ports") for _, own in dropped):
                self._apply_published()
            self._rewrite_hosts([n for n, _ in dropped])
        for network, _ in dropped:
            with contextlib.suppress(NotFound):
                self._event(self.get(network), "disconnect", cid)

    # ---- operator clean-up --------------------------------------------------------
    def teardown(self) -> list[str]:
        """Remove every kernel object of this instance's networks: namespaces, links, nft tables.

        The records stay, so containers can be recreated; returns what was removed.
        """
        removed: list[str] = []
        with self._lock():
            if self.netns_dir.exists():
                for path in sorted(self.netns_dir.iterdir()):
                    netlink.delete_netns(path)
                    removed.append(f"netns {path}")
            for prefix in (self.veth_prefix, self.vxlan_prefix, self.bridge_prefix):
                for link in netlink.links_with_prefix(prefix):
                    netlink.delete_link(link)
                    removed.append(f"link {link}")
            tables = firewall.instance_tables_present(self.instance)
            firewall.apply_ruleset(firewall.render_ruleset(self.instance, [], []))
            removed += tables
        return removed
