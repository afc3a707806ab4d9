"""Networks without root: IPAM, `-p` parsing, hosts/resolv files and the generated nft ruleset."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidSpec, QuotaExceeded
from engine.networks import egress, firewall, ipam
from engine.networks.manager import (
    _write_in_place,
    host_nameservers,
    hosts_text,
    resolv_conf_text,
    validate_network_name,
)
from engine.networks.model import Network, PortMapping
from engine.networks.ports import check_duplicates, parse_publish


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


# ---- IPAM ----------------------------------------------------------------------------------
def test_allocate_subnet_skips_taken_and_host_routes() -> None:
    pool = net("10.89.0.0/16")
    assert ipam.allocate_subnet(pool, 24, []) == net("10.89.0.0/24")
    taken = [net("10.89.0.0/24"), net("10.89.1.0/25"), net("192.0.2.0/24")]
    assert ipam.allocate_subnet(pool, 24, taken) == net("10.89.2.0/24")
    assert ipam.allocate_subnet(net("10.89.0.0/16"), 26, [net("10.89.0.0/25")]) == net("10.89.0.128/26")


def test_allocate_subnet_pool_exhausted() -> None:
    with pytest.raises(QuotaExceeded, match="no free /24"):
        ipam.allocate_subnet(net("10.89.0.0/23"), 24, [net("10.89.0.0/24"), net("10.89.1.0/24")])
    with pytest.raises(QuotaExceeded):
        ipam.allocate_subnet(net("10.89.0.0/16"), 24, [net("10.0.0.0/8")])


@pytest.mark.parametrize(
    "text, words",
    [
        ("10.1.2.0", "CIDR"),
        ("10.1.2.3/24", "host bits"),
        ("10.1.2.0/33", "invalid subnet"),
        ("fd00::/64", "IPv4"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/24", "multicast"),
        ("10.0.0.0/7", "prefix length"),
        ("10.0.0.0/30", "prefix length"),
        ("banana/24", "invalid subnet"),
    ],
)
def test_parse_subnet_rejects(text: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        ipam.parse_subnet(text)


def test_overlap_check_names_the_owner() -> None:
    with pytest.raises(Conflict, match="network web"):
        ipam.check_no_overlap(net("10.89.0.0/16"), [("network web", net("10.89.3.0/24"))])
    ipam.check_no_overlap(net("10.90.0.0/24"), [("network web", net("10.89.3.0/24"))])


def test_allocate_address_skips_gateway_and_used_and_fills_up() -> None:
    subnet = net("10.89.0.0/29")  # .1 gateway, .2-.6 containers, .7 broadcast
    assert ipam.gateway_of(subnet) == ipaddress.IPv4Address("10.89.0.1")
    assert str(ipam.allocate_address(subnet, [])) == "10.89.0.2"
    assert str(ipam.allocate_address(subnet, ["10.89.0.2", "10.89.0.4"])) == "10.89.0.3"
    with pytest.raises(QuotaExceeded, match="no free address"):
        ipam.allocate_address(subnet, [f"10.89.0.{i}" for i in range(2, 7)])


# ---- -p parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080:80", PortMapping(8080, 80)),
        ("127.0.0.1:8080:80", PortMapping(8080, 80, "tcp", "127.0.0.1")),
        ("5353:53/udp", PortMapping(5353, 53, "udp")),
        ("0.0.0.0:1:65535/TCP", PortMapping(1, 65535, "tcp")),
        (":8080:80", PortMapping(8080, 80)),
    ],
)
def test_parse_publish(text: str, expected: PortMapping) -> None:
    assert parse_publish(text) == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("80", "HOSTPORT:PORT"),
        ("0:80", "out of range"),
        ("65536:80", "out of range"),
        ("8080:0", "out of range"),
        ("8080:70000", "out of range"),
        ("x:80", "not a number"),
        ("8080:80/sctp", "tcp or udp"),
        ("1.2.3:8080:80", "not an IP address"),
        ("[::1]:8080:80", "IPv4"),
        ("-1:80", "not a number"),
    ],
)
def test_parse_publish_rejects(text: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        parse_publish(text)


def test_duplicate_host_ports_in_one_request() -> None:
    with pytest.raises(InvalidSpec, match="twice"):
        check_duplicates((PortMapping(8080, 80), PortMapping(8080, 81)))
    check_duplicates((PortMapping(8080, 80), PortMapping(8080, 80, "udp")))


# ---- names, hosts, resolv.conf -------------------------------------------------------------
def test_network_names() -> None:
    assert validate_network_name("shop-1") == "shop-1"
    for bad in ("bridge", "none", "host", "Bad", "bridge.acme", "a/b", ""):
        with pytest.raises(InvalidSpec):
            validate_network_name(bad)


def test_hosts_text_lists_itself_and_peers() -> None:
    own = {"name": "web", "hostname": "abc", "ip": "10.89.0.2", "aliases": ["www"]}
    peer = {"name": "db", "hostname": "def", "ip": "10.89.0.3", "aliases": []}
    text = hosts_text(own, [peer], "abc")
    assert "10.89.0.2\tabc web www\n" in text and "10.89.0.3\tdb\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "127.0.1.1\tsolo" in hosts_text(None, [], "solo")


def test_a_bind_mounted_file_is_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("a long first version of the file\n")
    inode = path.stat().st_ino
    _write_in_place(path, "short\n")
    assert path.read_text() == "short\n" and path.stat().st_ino == inode  # cut to the new length
    _write_in_place(path, "a longer second version\n")
    assert path.read_text() == "a longer second version\n" and path.stat().st_ino == inode
    before = path.stat().st_mtime_ns
    _write_in_place(path, "a longer second version\n")  # unchanged: not written at all
    assert path.stat().st_mtime_ns == before
    _write_in_place(tmp_path / "gone", "x")  # a container already removed: nothing to do
    assert not (tmp_path / "gone").exists()


def test_resolv_conf_drops_loopback_nameservers(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 9.9.9.9\nnameserver ::1\nsearch x\n")
    assert host_nameservers(resolv) == ["9.9.9.9"]
    assert resolv_conf_text(["9.9.9.9"]).startswith("nameserver 9.9.9.9\n")
    assert "no nameserver" in resolv_conf_text([])


# ---- the nft ruleset ------------------------------------------------------------------------
def _network(name: str, bridge: str, subnet: str, internal: bool = False) -> Network:
    n = net(subnet)
    return Network(
        name=name,
        id="x",
        tenant="t",
        driver="bridge",
        subnet=subnet,
        gateway=str(n[1]),
        bridge=bridge,
        internal=internal,
    )


def test_ruleset_without_networks_only_deletes_our_tables() -> None:
    script = firewall.render_ruleset("i1", [], [])
    assert script.splitlines() == [
        "table inet hp_i1",
        "delete table inet hp_i1",
        "table ip hp_i1_nat",
        "delete table ip hp_i1_nat",
    ]


def test_ruleset_isolates_networks_and_publishes_ports() -> None:
    a = _network("a", "hbA", "10.89.0.0/24")
    b = _network("b", "hbB", "10.89.1.0/24", internal=True)
    pub = [
        firewall.Published(PortMapping(8080, 80), "10.89.0.2"),
        firewall.Published(PortMapping(5353, 53, "udp", "127.0.0.1"), "10.89.0.3"),
    ]
    script = firewall.render_ruleset("i1", [a, b], pub)
    lines = [line.strip() for line in script.splitlines()]
    # replaced atomically: declare, delete, redefine
    assert lines[:4] == [
        "table inet hp_i1",
        "delete table inet hp_i1",
        "table ip hp_i1_nat",
        "delete table ip hp_i1_nat",
    ]
    fwd = lines.index('oifname { "hbA", "hbB" } ct status dnat accept')
    same = lines.index('iifname "hbA" oifname "hbA" accept')
    between = lines.index(
        'iifname { "hbA", "hbB" } oifname { "hbA", "hbB" } reject with icmpx type admin-prohibited'
    )
    assert fwd < same < between
    assert 'iifname "hbB" reject with icmpx type admin-prohibited' in lines  # internal: nowhere else
    assert 'iifname { "hbA", "hbB" } reject with icmpx type admin-prohibited' in lines  # input: not the host
    assert "tcp dport 8080 dnat to 10.89.0.2:80" in lines
    assert "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.89.0.3:53" in lines
    assert lines.count("fib daddr type local jump publish") == 2  # prerouting and output
    assert 'ip saddr 127.0.0.0/8 oifname { "hbA", "hbB" } masquerade' in lines
    assert 'ip saddr 10.89.0.0/24 oifname != "hbA" masquerade' in lines
    assert 'ip saddr 10.89.0.0/24 oifname "hbA" ct status dnat masquerade' in lines  # hairpin
    assert not any(
        line.startswith("ip saddr 10.89.1.0/24 oifname !=") for line in lines
    )  # internal: no masquerade


def test_allocate_address_round_robin_after_the_last_one() -> None:
    subnet = net("10.89.0.0/29")
    assert str(ipam.allocate_address(subnet, [], after="10.89.0.2")) == "10.89.0.3"
    assert str(ipam.allocate_address(subnet, ["10.89.0.2"], after="10.89.0.6")) == "10.89.0.3"
    assert str(ipam.allocate_address(subnet, [], after="10.99.0.9")) == "10.89.0.2"  # unknown: from the start


def test_overlay_options() -> None:
    from engine.networks.manager import OverlayOptions, _check_overlay

    subnet = net("10.240.0.0/24")
    filled = _check_overlay("ov", subnet, OverlayOptions(peers=("198.18.0.2",)))
    assert filled.vni is not None and 1 <= filled.vni <= 0xFFFFFF
    assert (
        filled.vni == _check_overlay("ov", subnet, OverlayOptions(peers=("1.2.3.4",))).vni
    )  # same name, same VNI
    for bad, words in (
        (OverlayOptions(), "--peer"),
        (OverlayOptions(peers=("nope",)), "underlay address"),
        (OverlayOptions(peers=("1.2.3.4",), vni=0), "VNI"),
        (OverlayOptions(peers=("1.2.3.4",), ip_range="10.9.0.0/25"), "inside the subnet"),
    ):
        with pytest.raises(InvalidSpec, match=words):
            _check_overlay("ov", subnet, bad)


def test_allocate_address_within_a_range() -> None:
    subnet = net("10.240.0.0/24")
    assert str(ipam.allocate_address(subnet, [], within=net("10.240.0.128/25"))) == "10.240.0.128"


def test_joined_namespace_binds_sys_without_submounts_and_masks_net_devices() -> None:
    from engine.runtime.idmap import IdRange
    from engine.runtime.oci_spec import BundleSpec, ProcessSpec, build_config

    process = ProcessSpec(args=("true",), env=(), cwd="/", uid=0, gid=0)
    base = BundleSpec(process=process, hostname="h", id_range=IdRange(100000), cgroups_path="/x")
    joined = BundleSpec(**{**base.__dict__, "netns_path": "/run/x"})
    own = build_config(base)
    sys_own = next(m for m in own["mounts"] if m["destination"] == "/sys")
    assert sys_own["type"] == "sysfs" and "/sys/class/net" not in own["linux"]["maskedPaths"]
    config = build_config(joined)
    sys_joined = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert (
        sys_joined["type"] == "bind"
        and "rbind" not in sys_joined["options"]
        and "ro" in sys_joined["options"]
    )
    assert {"/sys/class/net", "/sys/devices/virtual/net"} <= set(config["linux"]["maskedPaths"])
    assert {"type": "network", "path": "/run/x"} in config["linux"]["namespaces"]
    host = build_config(BundleSpec(**{**base.__dict__, "netns_path": "host"}))
    assert all(ns["type"] != "network" for ns in host["linux"]["namespaces"])


def test_egress_policy_rejects_private_ranges_after_allow_lists_and_dns() -> None:
    a = _network("a", "hbA", "10.89.0.0/24")
    a.tenant = "acme"
    b = _network("b", "hbB", "10.89.1.0/24")
    b.tenant = "globex"
    script = firewall.render_ruleset(
        "i1",
        [a, b],
        [],
        egress_allow={"acme": ("10.20.0.0/16", "fd00:1::/64"), "nobody": ("192.168.0.0/16",)},
        nameservers=["10.255.255.53"],
    )
    lines = [line.strip() for line in script.splitlines()]
    published = lines.index('iifname { "hbA", "hbB" } ct status dnat accept')
    allow = lines.index('iifname { "hbA" } ip daddr { 10.20.0.0/16 } accept')
    assert 'iifname { "hbA" } ip6 daddr { fd00:1::/64 } accept' in lines
    dns = lines.index(
        'iifname { "hbA", "hbB" } ip daddr { 10.255.255.53 } meta l4proto { tcp, udp } th dport 53 accept'
    )
    deny = lines.index(
        'iifname { "hbA", "hbB" } ip daddr { 10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, '
        "192.168.0.0/16 } reject with icmpx type admin-prohibited"
    )
    deny6 = lines.index(
        'iifname { "hbA", "hbB" } ip6 daddr { fc00::/7, fe80::/10 } reject with icmpx type admin-prohibited'
    )
    assert published < dns < allow < deny < deny6
    assert not any(
        "hbB" in line and "accept" in line and "daddr" in line and "53" not in line for line in lines
    )
    assert "192.168.0.0/16 } accept" not in script  # a tenant without networks here opens nothing


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            ["10.1.0.0/16", "192.168.5.7", "10.1.0.0/16", "fd00::/8"],
            ("10.1.0.0/16", "192.168.5.7/32", "fd00::/8"),
        ),
        ([], ()),
    ],
)
def test_allow_list_is_normalised(given: list[str], expected: tuple[str, ...]) -> None:
    assert egress.parse_allow_list(given) == expected


@pytest.mark.parametrize("bad", ["10.1.0.1/16", "lan", "10.0.0.0/33", "", "1.2.3.4; flush ruleset"])
def test_allow_list_refuses_bad_ranges(bad: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid allow-list entry"):
        egress.parse_allow_list([bad])


def test_joined_namespace_masks_the_net_directory_of_every_host_nic(tmp_path: Path) -> None:
    from engine.runtime.oci_spec import joined_netns_masked

    sys_root = tmp_path / "sys"
    pci = sys_root / "devices" / "pci0000:00" / "0000:00:03.0" / "virtio2" / "net" / "eth0"
    for device in (pci, sys_root / "devices" / "virtual" / "net" / "lo"):
        device.mkdir(parents=True)
    (sys_root / "class" / "net").mkdir(parents=True)
    (sys_root / "class" / "net" / "eth0").symlink_to(pci)
    (sys_root / "class" / "net" / "lo").symlink_to(sys_root / "devices" / "virtual" / "net" / "lo")
    (sys_root / "class" / "net" / "odd").symlink_to(tmp_path)  # outside /sys/devices: ignored
    assert joined_netns_masked(sys_root) == [
        "/sys/class/net",
        "/sys/devices/virtual/net",
        "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net",
    ]
    assert joined_netns_masked(tmp_path / "missing") == ["/sys/class/net", "/sys/devices/virtual/net"]


def test_protected_hosts_are_reached_only_on_their_open_ports_whatever_the_allow_list() -> None:
    a = _network("a", "hbA", "10.89.0.0/24")
    a.tenant = "acme"
    script = firewall.render_ruleset(
        "i1",
        [a],
        [],
        egress_allow={"acme": ("10.0.0.0/8",)},
        protected={"10.0.0.5": ("8080/tcp", "5353/udp"), "198.51.100.7": (), "2001:db8::7": ("443/tcp",)},
    )
    lines = [line.strip() for line in script.splitlines()]
    opened = lines.index(
        'iifname { "hbA" } ip daddr . meta l4proto . th dport '
        "{ 10.0.0.5 . tcp . 8080, 10.0.0.5 . udp . 5353 } accept"
    )
    closed = lines.index(
        'iifname { "hbA" } ip daddr { 10.0.0.5, 198.51.100.7 } reject with icmpx type admin-prohibited'
    )
    assert 'iifname { "hbA" } ip6 daddr . meta l4proto . th dport { 2001:db8::7 . tcp . 443 } accept' in lines
    assert 'iifname { "hbA" } ip6 daddr { 2001:db8::7 } reject with icmpx type admin-prohibited' in lines
    allow = lines.index('iifname { "hbA" } ip daddr { 10.0.0.0/8 } accept')
    assert opened < closed < allow


def test_protected_hosts_are_normalised() -> None:
    assert egress.parse_protected(
        {" 10.0.0.5": ["8080", "53/udp", "8080/tcp", "22/tcp"], "2001:DB8::1": []}
    ) == {
        "10.0.0.5": ("22/tcp", "8080/tcp", "53/udp"),
        "2001:db8::1": (),
    }


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ({"redis.lan": []}, "invalid protected host 'redis.lan'"),
        ({"10.0.0.0/8": []}, "invalid protected host"),
        ({"10.0.0.5": ["0/tcp"]}, "invalid open port '0/tcp'"),
        ({"10.0.0.5": ["80/icmp"]}, "invalid open port '80/icmp'"),
        ({"10.0.0.5": ["80; flush ruleset"]}, "invalid open port"),
    ],
)
def test_protected_hosts_refuse_bad_input(entries: dict[str, list[str]], words: str) -> None:
    with pytest.raises(InvalidSpec, match=words.replace("(", r"\(")):
        egress.parse_protected(entries)
