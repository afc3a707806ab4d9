"""The seam for the kernel's network objects: namespaces, bridges, veth pairs, VXLAN, routes.

Everything goes through pyroute2 (netlink) in this process. Work inside a
container's namespace runs in a short-lived thread that first joins the
namespace (setns affects only the calling thread) and checks that it did,
so a netlink socket can never configure the host by mistake.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.errors import RuntimeFailure

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# pyroute2 is imported by the functions that use it (about 100 ms): listing containers or
# images never pays for it (tests/engine/unit/test_cli_imports.py).

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh OS thread (namespace changes die with it) and return its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="hp-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def _oserror(what: str) -> RuntimeFailure:
    err = ctypes.get_errno()
    return RuntimeFailure(f"{what}: {os.strerror(err)}")


def create_netns(path: Path) -> None:
    """Create a new network namespace kept alive by a bind mount at ``path`` (with lo up).

    Raises RuntimeFailure; on failure nothing is left at ``path``.
    """
    from pyroute2 import IPRoute

    def run() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("cannot create a network namespace")
        _pin_thread_netns(path)
        _open_low_ports_and_ping()
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    _in_thread(run)


def _pin_thread_netns(path: Path) -> None:
    """Keep the calling thread's network namespace alive by bind-mounting it at ``path``.

    Raises RuntimeFailure; on failure nothing is left at ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=False)
    try:
        if _libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), b"none", MS_BIND, None) != 0:
            raise _oserror(f"cannot bind-mount the network namespace at {path}")
    except BaseException:
        path.unlink()
        raise


def _open_low_ports_and_ping() -> None:
    """Let every user of the thread's namespace bind low ports and ping, as rootless engines do,
    and never forward: a container on several networks must not route between them.

    The namespace belongs to the host's user namespace, so the container's root has no
    CAP_NET_BIND_SERVICE in it (nor the right to turn forwarding back on). A new namespace
    copies the host's ``ip_forward`` (1 on a host that routes containers), hence the write.
    """
    _write_proc_sys("net/ipv4/ip_unprivileged_port_start", "0")
    _write_proc_sys("net/ipv4/ping_group_range", "0 2147483647")
    _write_proc_sys("net/ipv4/ip_forward", "0")


def _write_proc_sys(key: str, value: str) -> None:
    """Write a per-namespace sysctl of the calling thread's network namespace."""
    with open(f"/proc/sys/{key}", "w", encoding="ascii") as f:
        f.write(value)


def delete_netns(path: Path) -> None:
    """Unmount and remove the namespace file at ``path``; a missing one is fine."""
    if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise RuntimeFailure(f"cannot unmount the network namespace {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _enter_netns(path: Path) -> None:
    """Move the calling thread into the network namespace at ``path`` and check that it did."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise _oserror(f"cannot enter the network namespace {path}")
    finally:
        os.close(fd)
    if os.stat("/proc/thread-self/ns/net").st_ino != os.stat(path).st_ino:
        raise RuntimeFailure(f"entering the network namespace {path} did not take effect")


def in_netns(path: Path, fn: Callable[[IPRoute], T]) -> T:
    """Run ``fn(ipr)`` with a netlink socket inside the namespace at ``path``."""
    from pyroute2 import IPRoute

    def run() -> T:
        _enter_netns(path)
        with IPRoute() as ipr:
            return fn(ipr)

    return _in_thread(run)


def link_exists(name: str) -> bool:
    """Whether a network interface called ``name`` exists on the host (the caller's namespace)."""
    try:
        socket.if_nametoindex(name)  # one ioctl, where a netlink socket costs milliseconds
    except OSError:
        return False
    return True


def links_with_prefix(prefix: str) -> list[str]:
    """Host interfaces whose name starts with ``prefix``."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = [link.get("ifname") for link in ipr.get_links()]
    return [n for n in names if isinstance(n, str) and n.startswith(prefix)]


def delete_link(name: str) -> None:
    """Delete the host interface ``name``; a missing one is fine."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)
        if index:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index[0])


def _set_sysctl(name: str, key: str, value: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(f"/proc/sys/net/ipv4/conf/{name}/{key}").write_text(value)


def create_bridge(name: str, gateway: str | None, prefixlen: int, mtu: int) -> None:
    """Create bridge ``name`` with ``gateway``/``prefixlen`` (None: no address), up, route_localnet on.

    Raises RuntimeFailure if the kernel refuses; a half-made bridge is deleted.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
        except NetlinkError as exc:
            raise RuntimeFailure(f"cannot create bridge {name}: {exc}") from None
        try:
            index = ipr.link_lookup(ifname=name)[0]
            if gateway is not None:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
            _set_sysctl(name, "route_localnet", "1")
        except BaseException as exc:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=name)
            raise RuntimeFailure(f"cannot configure bridge {name}: {exc}") from None


def create_vxlan(name: str, bridge: str, vni: int, local: str, peers: list[str], mtu: int) -> None:
    """Create VXLAN device ``name`` (VNI ``vni``, UDP 4789) on ``bridge`` with a flood entry per peer.

    ``local`` "" lets the kernel pick the source address per peer (an overlay with no peers yet).
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            ipr.link(
                "add",
                ifname=name,
                kind="vxlan",
                vxlan_id=vni,
                vxlan_port=4789,
                vxlan_learning=1,
                mtu=mtu,
                **({"vxlan_local": local} if local else {}),
            )
            index = ipr.link_lookup(ifname=name)[0]
            master = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("set", index=index, master=master, state="up")
        except NetlinkError as exc:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=name)
            raise RuntimeFailure(f"cannot create VXLAN {name}: {exc}") from None
    for peer in peers:
        add_fdb_peer(name, peer)


def add_fdb_peer(vxlan: str, peer: str) -> None:
    """Flood unknown and broadcast frames of ``vxlan`` to the underlay address ``peer``."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=vxlan)[0]
        try:
            ipr.fdb("append", ifindex=index, lladdr="00:00:00:00:00:00", dst=peer)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise RuntimeFailure(f"cannot add VXLAN peer {peer}: {exc}") from None


def remove_fdb_peer(vxlan: str, peer: str) -> None:
    """Forget ``peer`` on ``vxlan``: its flood entry and the addresses learnt behind it (a missing
    entry is fine), so no frame goes to a host that left."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=vxlan)
        if not index:
            return
        for entry in ipr.fdb("dump", ifindex=index[0]):
            if entry.get("ifindex") == index[0] and entry.get("NDA_DST") == peer:
                with contextlib.suppress(NetlinkError):
                    ipr.fdb("del", ifindex=index[0], lladdr=entry.get("NDA_LLADDR"), dst=peer)


def host_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """IPv4 networks in use on the host (routes of the main table and addresses), with their device."""
    from pyroute2 import IPRoute

    found: list[tuple[str, ipaddress.IPv4Network]] = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        for route in ipr.get_routes(family=2, table=254):
            dst = route.get("dst")
            if dst and route["dst_len"] > 0:
                found.append(
                    (
                        f"route via {names.get(route.get('oif'), '?')}",
                        ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False),
                    )
                )
        for addr in ipr.get_addr(family=2):
            net = ipaddress.IPv4Network(f"{addr.get('address')}/{addr['prefixlen']}", strict=False)
            if not net.is_loopback:
                found.append((f"address on {names.get(addr['index'], '?')}", net))
    return found


@dataclass(frozen=True)
class VethPlug:
    """A veth joining a container's namespace to a bridge: its host end ``host_name`` on
    ``bridge``, its inner end ``ifname`` with ``address``/``prefixlen``; ``gateway`` None: no
    default route."""

    host_name: str
    bridge: str
    ifname: str
    address: str
    prefixlen: int
    gateway: str | None
    mtu: int


def create_netns_with_veth(path: Path, plug: VethPlug) -> None:
    """Create a namespace at ``path`` with lo and ``plug`` (its eth0) joined to the bridge.

    One thread does it all (the cheapest way): it opens a netlink socket in
    the host namespace, moves itself into a new namespace, and configures each
    side through its own socket.
    Raises RuntimeFailure; on failure neither the namespace nor the veth remains.
    """
    from pyroute2 import IPRoute

    def run() -> None:
        with IPRoute() as host:
            master = _bridge_index(host, plug.bridge)  # opens the socket here, in the host namespace
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise _oserror("cannot create a network namespace")
            if not host.link_lookup(ifname=plug.bridge):
                raise RuntimeFailure("the host netlink socket followed the thread into the new namespace")
            _pin_thread_netns(path)
            try:
                _open_low_ports_and_ping()
                _plug_veth(host, master, plug)
            except BaseException as exc:
                delete_netns(path)
                raise _as_failure(exc) from None

    _in_thread(run)


def add_veth_to_netns(path: Path, plug: VethPlug) -> None:
    """Join the existing namespace at ``path`` to one more bridge with ``plug``.

    Its gateway becomes the default route only if the namespace has none yet
    (the first network with a gateway keeps it). Raises RuntimeFailure; on
    failure the veth is gone and the namespace is as it was.
    """
    from pyroute2 import IPRoute

    def run() -> None:
        with IPRoute() as host:
            master = _bridge_index(host, plug.bridge)
            _enter_netns(path)
            try:
                _plug_veth(host, master, plug)
            except BaseException as exc:
                raise _as_failure(exc) from None

    _in_thread(run)


def _bridge_index(host: IPRoute, bridge: str) -> int:
    master = host.link_lookup(ifname=bridge)
    if not master:
        raise RuntimeFailure(f"bridge {bridge} is missing; recreate the network")
    return int(master[0])


def _as_failure(exc: BaseException) -> BaseException:
    if isinstance(exc, RuntimeFailure) or not isinstance(exc, Exception):
        return exc
    return RuntimeFailure(f"cannot set up the container's network: {exc}")


def _plug_veth(host: IPRoute, master: int, plug: VethPlug) -> None:
    """From a thread inside the container's namespace (``host``: a socket opened on the host side),
    add ``plug``'s veth, its host end on bridge ``master``; on error the veth is deleted."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        host.link(
            "add",
            ifname=plug.host_name,
            kind="veth",
            mtu=plug.mtu,
            peer={"ifname": plug.ifname, "net_ns_fd": fd},
        )
    finally:
        os.close(fd)
    try:
        index = host.link_lookup(ifname=plug.host_name)[0]
        host.link("set", index=index, master=master, state="up")
        # hairpin: a container reaching its own published port comes back through its port
        # (the host's sysfs mount shows host devices whatever namespace this thread is in)
        with contextlib.suppress(OSError):
            Path(f"/sys/class/net/{plug.host_name}/brport/hairpin_mode").write_text("1")
        with IPRoute() as inner:
            inner.link("set", index=inner.link_lookup(ifname="lo")[0], state="up")
            dev = inner.link_lookup(ifname=plug.ifname)[0]
            inner.addr("add", index=dev, address=plug.address, prefixlen=plug.prefixlen)
            inner.link("set", index=dev, state="up", mtu=plug.mtu)
            if plug.gateway is not None and not _has_default_route(inner):
                inner.route("add", dst="0.0.0.0/0", gateway=plug.gateway)
    except BaseException:
        with contextlib.suppress(NetlinkError):
            host.link("del", ifname=plug.host_name)
        raise


def _has_default_route(ipr: IPRoute) -> bool:
    return any(r["dst_len"] == 0 for r in ipr.get_routes(family=2, table=254))


def source_address_for(destination: str) -> str:
    """The local address the kernel would use to reach ``destination``; RuntimeFailure if unroutable."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=destination)
        except NetlinkError as exc:
            raise RuntimeFailure(f"no route to the overlay peer {destination}: {exc}") from None
    for route in routes:
        source = route.get("prefsrc")
        if source:
            return str(source)
    raise RuntimeFailure(f"cannot tell the local underlay address for {destination}; pass --underlay-ip")
