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
import functools
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import Conflict, InvalidSpec, NotFound, RuntimeFailure
from engine.events import EventJournal
from engine.fsutil import atomic_write_json, file_lock, read_json
from engine.networks import egress, firewall, ipam, netlink
from engine.networks.model import (
    BRIDGE,
    DEFAULT_NETWORK_PREFIX,
    HOST,
    NONE,
    PRIVILEGED_NETWORKS,
    Attachment,
    Network,
    PortMapping,
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


def _check_overlay(name: str, subnet: ipaddress.IPv4Network, o: OverlayOptions) -> OverlayOptions:
    """Validate overlay options; fill in the VNI (derived from the name, so every host agrees)."""
    if not o.peers:
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


def hosts_text(own: dict[str, Any] | None, others: Sequence[dict[str, Any]], hostname: str) -> str:
    """/etc/hosts of one container: localhost, itself, and every other container on its network."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if own is None:
        lines.append(f"127.0.1.1\t{hostname}")
    else:
        names = dict.fromkeys([own["hostname"], own["name"], *own["aliases"]])
        lines.append(f"{own['ip']}\t{' '.join(names)}")
    for ep in sorted(others, key=lambda e: _ip_order(e["ip"])):
        names = dict.fromkeys([ep["name"], *ep["aliases"]])
        lines.append(f"{ep['ip']}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=65536)
def _ip_order(ip: str) -> int:
    """Sort key of an IPv4 address (cached: every attach sorts every peer of every container)."""
    return int(ipaddress.IPv4Address(ip))


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
    ) -> Network:
        if driver not in DRIVERS:
            raise InvalidSpec(f"unknown network driver {driver!r}: use bridge or overlay")
        if driver == "overlay":
            if subnet is None:
                raise InvalidSpec("an overlay network needs --subnet (the same on every host)")
            overlay = _check_overlay(name, ipam.parse_subnet(subnet), overlay or OverlayOptions())
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
                network.underlay_ip = overlay.underlay_ip or netlink.source_address_for(overlay.peers[0])
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
        created on first use) or a network name. Writes the container's hosts
        file at ``hosts_path`` and updates those of the other containers on the
        network. Raises InvalidSpec (bad alias, port, privileged network),
        NetworkNotFound, Conflict (host port in use) or RuntimeFailure; on
        error nothing is left behind.
        """
        for alias in aliases:
            validate_alias(alias)
        ports = tuple(ports)
        check_duplicates(ports)
        resolved = self.resolve(network, tenant, allow_privileged=allow_privileged)
        if resolved in (NONE, HOST):
            if ports:
                raise InvalidSpec(f"cannot publish ports with network {resolved}: use a bridge network")
            if aliases:
                raise InvalidSpec(f"network aliases need a bridge network, not {resolved}")
            if resolved == HOST:
                return Attachment(
                    network=HOST,
                    netns_path=HOST_NETNS,
                    resolv_conf=resolv_conf_text(host_nameservers()),
                )
            return Attachment(network=NONE)
        with self._lock():
            self._check_ports_free(ports)  # before the default network is made: bad input creates nothing
            if resolved.startswith(DEFAULT_NETWORK_PREFIX) and not self._record(resolved).exists():
                self._create_locked(
                    resolved,
                    tenant=tenant,
                    subnet=None,
                    driver="bridge",
                    internal=False,
                    labels={"org.hostpanel.default": "true"},
                )
            net = self.get(resolved)
            if ports and net.driver == "overlay":
                raise InvalidSpec("an overlay network has no published ports; publish from a bridge network")
            if not netlink.link_exists(net.bridge):
                self._restore(net)
            endpoints = self._endpoints(resolved)
            subnet = ipaddress.IPv4Network(net.subnet)
            used = [ep["ip"] for ep in endpoints.values()]
            last_file = self.dir / resolved / "last-address"
            last = last_file.read_text().strip() if last_file.exists() else None
            # round robin: an address just released (its veth may still be dying) is not reused at once
            within = ipaddress.IPv4Network(net.ip_range) if net.ip_range else None
            address = str(ipam.allocate_address(subnet, used, after=last, within=within))
            own = {
                "name": name,
                "hostname": hostname,
                "ip": address,
                "aliases": list(dict.fromkeys(aliases)),
                "hosts": str(hosts_path),
                "ports": [p.to_dict() for p in ports],
            }
            netns = self.netns_path(cid)
            veth = f"{self.veth_prefix}{cid[:7]}"
            with contextlib.ExitStack() as undo:
                gateway = None if net.internal else net.gateway
                netlink.create_netns_with_veth(
                    netns, veth, net.bridge, address, subnet.prefixlen, gateway, net.mtu
                )
                undo.callback(netlink.delete_netns, netns)
                undo.callback(netlink.delete_link, veth)
                endpoints[cid] = own
                atomic_write_json(self._endpoints_file(resolved), endpoints)
                last_file.write_text(address)
                undo.callback(self._drop_endpoint, resolved, cid)
                if ports:
                    self._apply_published([firewall.Published(p, address) for p in ports])
                    undo.callback(self._apply_published)
                self._write_hosts(endpoints, self._remote(resolved))
                undo.pop_all()
        self._event(net, "connect", cid)
        return Attachment(
            network=resolved,
            ip_address=address,
            netns_path=str(netns),
            ports=ports,
            hosts=hosts_text(
                own, [ep for c, ep in endpoints.items() if c != cid] + self._remote(resolved), hostname
            ),
            resolv_conf=resolv_conf_text(host_nameservers()),
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

    def set_remote_endpoints(self, name: str, entries: dict[str, str]) -> None:
        """Tell an overlay network which containers run on its other hosts: {name: address}.

        They are added to the /etc/hosts of this host's containers on it (the
        panel knows every host's containers; there is no DNS server). Replaces
        the previous set. Raises NetworkNotFound, InvalidSpec for a bad name or
        an address outside the subnet.
        """
        with self._lock():
            net = self.get(name)
            subnet = ipaddress.IPv4Network(net.subnet)
            remote = []
            for host, address in sorted(entries.items()):
                validate_alias(host)
                try:
                    ip = ipaddress.IPv4Address(address)
                except ValueError:
                    raise InvalidSpec(f"invalid address {address!r} for {host}") from None
                if ip not in subnet:
                    raise InvalidSpec(f"{host} at {address} is outside the network's subnet {subnet}")
                remote.append({"name": host, "ip": address, "aliases": []})
            atomic_write_json(self.dir / name / "remote.json", remote)
            self._write_hosts(self._endpoints(name), remote)

    @staticmethod
    def _write_hosts(endpoints: dict[str, dict[str, Any]], remote: Sequence[dict[str, Any]] = ()) -> None:
        for cid, ep in endpoints.items():
            others = [e for c, e in endpoints.items() if c != cid] + list(remote)
            _write_in_place(Path(ep["hosts"]), hosts_text(ep, others, ep["hostname"]))

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
            self._write_hosts(endpoints, self._remote(network))

    def detach(self, cid: str, network: str) -> None:
        """Undo :meth:`attach`: address, veth, namespace, published ports, hosts entries (idempotent)."""
        if network in ("", NONE, HOST):
            return
        with self._lock():
            endpoints = self._endpoints(network)
            own = endpoints.pop(cid, None)
            netns = self.netns_path(cid)
            if netns.exists():
                # Dropping the last reference destroys the namespace; the kernel then removes the
                # veth pair in the background (deleting it here would cost ~20 ms on the remove path).
                netlink.delete_netns(netns)
            else:
                netlink.delete_link(f"{self.veth_prefix}{cid[:7]}")
            if own is None:
                return
            if self._record(network).exists():
                atomic_write_json(self._endpoints_file(network), endpoints)
            if own.get("ports"):
                self._apply_published()
            self._write_hosts(endpoints, self._remote(network))
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
