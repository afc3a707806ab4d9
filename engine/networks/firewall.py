"""nftables rules of one engine instance: isolation, masquerade and published ports.

Every rule sits in the instance's own tables (``inet hp_<instance>`` and
``ip hp_<instance>_nat``); the whole set is regenerated from the engine's
state and replaced in one atomic ``nft -f -`` transaction, so a crash never
leaves half a ruleset and ``teardown`` removes exactly ours.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.errors import RuntimeFailure
from engine.networks.egress import DENIED_V4, DENIED_V6, split_families
from engine.networks.model import Network, PortMapping

REJECT = "reject with icmpx type admin-prohibited"


@dataclass(frozen=True)
class Published:
    """A published port and where it goes."""

    mapping: PortMapping
    container_ip: str


def table_names(instance: str) -> tuple[str, str]:
    """The filter table (family inet) and NAT table (family ip) of ``instance``."""
    return f"hp_{instance}", f"hp_{instance}_nat"


def _names(items: Sequence[str]) -> str:
    return "{ " + ", ".join(f'"{i}"' for i in items) + " }"


def render_ruleset(
    instance: str,
    networks: Sequence[Network],
    published: Sequence[Published],
    *,
    egress_allow: Mapping[str, Sequence[str]] | None = None,
    protected: Mapping[str, Sequence[str]] | None = None,
    nameservers: Sequence[str] = (),
) -> str:
    """The complete nft script for ``instance``: replaces its tables, or deletes them if no networks.

    Rules, in order: replies and published ports (``ct status dnat``) pass;
    traffic inside one network passes; an internal network reaches nothing
    else; traffic between networks and new connections into a network from
    outside are rejected (fast failure, not a timeout). Then the egress
    policy: DNS to the ``nameservers`` containers are given passes;
    ``protected`` hosts (address -> open "PORT/PROTO"s: the panel's services
    and the pool's other hosts) are reached only on their open ports; a
    network's tenant's allow-listed ranges (``egress_allow``, tenant ->
    CIDRs) pass; private, shared and link-local ranges
    (egress.DENIED_V4/V6) are rejected; the rest (the internet) passes. Containers reach none of the
    host's own addresses except published ports (input chain). Outbound
    traffic of non-internal networks is masqueraded, and so are
    published-port connections from 127.0.0.0/8 (they need route_localnet
    on the bridge).
    """
    filt, nat = table_names(instance)
    lines = [f"table inet {filt}", f"delete table inet {filt}", f"table ip {nat}", f"delete table ip {nat}"]
    if not networks:
        return "\n".join(lines) + "\n"
    bridges = sorted(n.bridge for n in networks)
    ours = _names(bridges)
    lines += [
        f"table inet {filt} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    iifname {ours} ct state established,related accept",
        f"    oifname {ours} ct state established,related accept",
        f"    oifname {ours} ct status dnat accept",
    ]
    for n in sorted(networks, key=lambda n: n.bridge):
        lines.append(f'    iifname "{n.bridge}" oifname "{n.bridge}" accept')
        if n.internal:
            lines.append(f'    iifname "{n.bridge}" {REJECT}')
    lines += [
        f"    iifname {ours} oifname {ours} {REJECT}",
        f"    oifname {ours} {REJECT}",
        *_egress_rules(networks, ours, egress_allow or {}, protected or {}, nameservers),
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    iifname {ours} ct state established,related accept",
        f"    iifname {ours} {REJECT}",
        "  }",
        "}",
        f"table ip {nat} {{",
        "  chain publish {",
    ]
    for p in sorted(published, key=lambda p: (p.mapping.protocol, p.mapping.host_port, p.mapping.host_ip)):
        lines.append(f"    {_publish_rule(p)}")
    lines += [
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump publish",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump publish",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    ip saddr 127.0.0.0/8 oifname {ours} masquerade",
    ]
    for n in sorted(networks, key=lambda n: n.bridge):
        # a published port reached from its own network (or its own container) needs the reply
        # to come back through the gateway
        lines.append(f'    ip saddr {n.subnet} oifname "{n.bridge}" ct status dnat masquerade')
        if not n.internal:
            lines.append(f'    ip saddr {n.subnet} oifname != "{n.bridge}" masquerade')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _egress_rules(
    networks: Sequence[Network],
    ours: str,
    allow: Mapping[str, Sequence[str]],
    protected: Mapping[str, Sequence[str]],
    nameservers: Sequence[str],
) -> list[str]:
    """Forward rules for traffic leaving the host's networks (see render_ruleset)."""
    # a published port of another engine instance (DNAT'd here) is public, like ours
    lines = [f"    iifname {ours} ct status dnat accept"]
    if nameservers:
        servers = ", ".join(sorted(set(nameservers)))
        lines.append(
            f"    iifname {ours} ip daddr {{ {servers} }} meta l4proto {{ tcp, udp }} th dport 53 accept"
        )
    for family, addresses in zip(("ip", "ip6"), split_families(sorted(protected)), strict=True):
        opened = [
            f"{a} . {port.partition('/')[2]} . {port.partition('/')[0]}"
            for a in addresses
            for port in protected[a]
        ]
        if opened:
            match = f"{family} daddr . meta l4proto . th dport"
            lines.append(f"    iifname {ours} {match} {{ {', '.join(opened)} }} accept")
        if addresses:
            lines.append(f"    iifname {ours} {family} daddr {{ {', '.join(addresses)} }} {REJECT}")
    for tenant in sorted({n.tenant for n in networks}):
        own = sorted(n.bridge for n in networks if n.tenant == tenant and not n.internal)
        v4, v6 = split_families(allow.get(tenant, ()))
        if own and v4:
            lines.append(f"    iifname {_names(own)} ip daddr {{ {', '.join(v4)} }} accept")
        if own and v6:
            lines.append(f"    iifname {_names(own)} ip6 daddr {{ {', '.join(v6)} }} accept")
    lines += [
        f"    iifname {ours} ip daddr {{ {', '.join(DENIED_V4)} }} {REJECT}",
        f"    iifname {ours} ip6 daddr {{ {', '.join(DENIED_V6)} }} {REJECT}",
    ]
    return lines


def _publish_rule(p: Published) -> str:
    m = p.mapping
    match = "" if m.host_ip == "0.0.0.0" else f"ip daddr {m.host_ip} "
    return f"{match}{m.protocol} dport {m.host_port} dnat to {p.container_ip}:{m.container_port}"


def render_add_published(instance: str, published: Sequence[Published]) -> str:
    """An nft script that appends rules for ``published`` to the instance's publish chain."""
    nat = table_names(instance)[1]
    return "".join(f"add rule ip {nat} publish {_publish_rule(p)}\n" for p in published)


def render_replace_published(instance: str, published: Sequence[Published]) -> str:
    """An nft script that replaces the whole publish chain with rules for ``published`` (atomically)."""
    nat = table_names(instance)[1]
    return f"flush chain ip {nat} publish\n" + render_add_published(instance, published)


class _LibNftables:
    """libnftables through ctypes: a ruleset change without starting an `nft` process."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib

    def run(self, script: str) -> str | None:
        """Run ``script`` as one transaction; None on success, else nft's error text."""
        ctx = self.lib.nft_ctx_new(0)
        if not ctx:
            return "cannot create an nftables context"
        try:
            self.lib.nft_ctx_buffer_output(ctx)
            self.lib.nft_ctx_buffer_error(ctx)
            if self.lib.nft_run_cmd_from_buffer(ctx, script.encode()) == 0:
                return None
            err: bytes | None = self.lib.nft_ctx_get_error_buffer(ctx)
            return (err or b"").decode(errors="replace").strip() or "unknown error"
        finally:
            self.lib.nft_ctx_free(ctx)


@functools.cache
def _libnftables() -> _LibNftables | None:
    try:
        return _LibNftables()
    except OSError:
        return None


def apply_ruleset(script: str) -> None:
    """Load ``script`` in one nftables transaction; RuntimeFailure with nft's message.

    Uses libnftables in-process when the library is there (the `nft` command
    links it, so it is), else runs `nft -f -`.
    """
    lib = _libnftables()
    if lib is not None:
        error = lib.run(script)
        if error is not None:
            raise RuntimeFailure(f"nft refused the instance's ruleset: {error}")
        return
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeFailure("nft is not installed; run `hpctl host setup`") from None
    if proc.returncode != 0:
        raise RuntimeFailure(f"nft refused the instance's ruleset: {proc.stderr.strip()}")


def instance_tables_present(instance: str) -> list[str]:
    """The instance's tables that exist in the kernel now (for leak checks and teardown)."""
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    wanted = {f"table inet {table_names(instance)[0]}", f"table ip {table_names(instance)[1]}"}
    return [line.strip() for line in out.splitlines() if line.strip() in wanted]
