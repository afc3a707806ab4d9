"""Parsing, validation and the OCI form of resource limits (no root, no kernel)."""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from engine.cgroups.resources import (
    MIN_MEMORY,
    DeviceThrottle,
    HostCapacity,
    Resources,
    check_within,
    format_bytes,
    oci_resources,
    parse_bytes,
    parse_count,
    parse_cpus,
    parse_device_throttle,
    validate_resources,
)
from engine.errors import InvalidSpec, QuotaExceeded
from engine.runtime.model import Container

HOST = HostCapacity(cpus=2, memory=8 * 1024**3)
MiB = 1024**2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4096", 4096),
        ("256m", 256 * MiB),
        ("256MB", 256 * MiB),
        ("1.5g", int(1.5 * 1024**3)),
        ("512KiB", 512 * 1024),
        ("1t", 1024**4),
        (" 10 m ", 10 * MiB),
    ],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("-5m", "negative"),
        ("10x", "unknown unit"),
        ("lots", "number"),
        ("", "number"),
        ("99999999t", "exbibyte"),
        ("1.2.3m", "number"),
    ],
)
def test_parse_bytes_refuses(text: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        parse_bytes(text)


def test_parse_cpus_and_counts() -> None:
    assert parse_cpus("0.5") == 50_000
    assert parse_cpus("2") == 200_000
    for bad in ("0", "-1", "abc", "nan", "inf", "0.001"):
        with pytest.raises(InvalidSpec):
            parse_cpus(bad)
    assert parse_count("100", "pids limit") == 100
    for bad in ("0", "-3", "1.5", "x"):
        with pytest.raises(InvalidSpec, match="pids limit"):
            parse_count(bad, "pids limit")


def fake_stat(mode: int, rdev: int = 0) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, 0, 0, 0, 0, 0, 0)) if not rdev else _with_rdev(mode, rdev)


def _with_rdev(mode: int, rdev: int) -> os.stat_result:
    # os.stat_result takes st_rdev as a keyword-only extra field through its dict form
    return os.stat_result((mode, 0, 0, 1, 0, 0, 0, 0, 0, 0), {"st_rdev": rdev})


def test_device_throttle_reads_major_minor_from_stat() -> None:
    blk = _with_rdev(stat.S_IFBLK | 0o600, os.makedev(254, 0))
    t = parse_device_throttle("write_bps", "/dev/vda:1mb", stat_fn=lambda _p: blk)
    assert t == DeviceThrottle("write_bps", 254, 0, MiB, "/dev/vda")
    t = parse_device_throttle("read_iops", "/dev/vda:100", stat_fn=lambda _p: blk)
    assert (t.key, t.rate) == ("254:0", 100)


def test_device_throttle_refuses_non_block_devices_and_bad_rates() -> None:
    chr_dev = _with_rdev(stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(InvalidSpec, match="not a block device"):
        parse_device_throttle("read_bps", "/dev/null:1m", stat_fn=lambda _p: chr_dev)
    with pytest.raises(InvalidSpec, match="not a block device"):
        parse_device_throttle("read_bps", "/etc/hostname:1m", stat_fn=lambda _p: fake_stat(stat.S_IFREG))
    with pytest.raises(InvalidSpec, match="No such file"):
        parse_device_throttle("read_bps", "/dev/nope-hp:1m")
    with pytest.raises(InvalidSpec, match="DEVICE:RATE"):
        parse_device_throttle("read_bps", "/dev/vda")
    with pytest.raises(InvalidSpec, match="unknown unit"):
        parse_device_throttle("read_bps", "/dev/vda:1q")
    with pytest.raises(InvalidSpec, match="IOPS"):
        parse_device_throttle("write_iops", "/dev/vda:1m")


@pytest.mark.parametrize(
    "resources, error, words",
    [
        (Resources(memory=1 * MiB), InvalidSpec, "too small"),
        (Resources(memory=64 * 1024**3), QuotaExceeded, "more than this host has"),
        (Resources(memory=64 * MiB, memory_reservation=128 * MiB), InvalidSpec, "above its memory limit"),
        (Resources(cpu_quota=300_000), QuotaExceeded, "2 CPUs"),
        (Resources(cpu_quota=500), InvalidSpec, "too small"),
        (Resources(cpu_quota=50_000, cpu_period=10), InvalidSpec, "period"),
        (Resources(cpu_shares=1), InvalidSpec, "shares"),
        (Resources(pids=0), InvalidSpec, "pids"),
        (Resources(pids=10**9), InvalidSpec, "pids"),
        (
            Resources(devices=(DeviceThrottle("read_bps", 8, 0, 1), DeviceThrottle("read_bps", 8, 0, 2))),
            InvalidSpec,
            "two read_bps",
        ),
    ],
)
def test_validation(resources: Resources, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        validate_resources(resources, HOST)


def test_valid_limits_pass_and_minimum_memory_is_accepted() -> None:
    r = Resources(memory=MIN_MEMORY, cpu_quota=200_000, cpu_shares=512, pids=100)
    assert validate_resources(r, HOST) is r


def test_container_limits_within_tenant_quota() -> None:
    cap = Resources(memory=256 * MiB, cpu_quota=100_000, pids=100)
    check_within(Resources(memory=200 * MiB, cpu_quota=50_000, pids=50), cap, "acme")
    check_within(Resources(), cap, "acme")
    with pytest.raises(QuotaExceeded, match="tenant acme's quota 256MiB"):
        check_within(Resources(memory=300 * MiB), cap, "acme")
    with pytest.raises(QuotaExceeded, match="1 CPUs"):
        check_within(Resources(cpu_quota=150_000), cap, "acme")
    with pytest.raises(QuotaExceeded, match="pids"):
        check_within(Resources(pids=101), cap, "acme")


def test_round_trip_through_the_container_record() -> None:
    r = Resources(
        memory=256 * MiB,
        memory_reservation=128 * MiB,
        cpu_quota=50_000,
        cpu_shares=512,
        pids=100,
        devices=(DeviceThrottle("write_bps", 254, 0, MiB, "/dev/vda"),),
    )
    assert Resources.from_dict(r.to_dict()) == r
    c = Container(
        id="a" * 64, name="x", tenant="t", image="i", image_id="d", command=[], status="created", created=""
    )
    c.resources = r
    back = Container.from_dict(c.to_dict())
    assert back.resources == r
    # records written before limits existed load as unlimited
    old = c.to_dict()
    del old["resources"]
    assert Container.from_dict(old).resources.is_unlimited


def test_merge_keeps_limits_not_given() -> None:
    base = Resources(memory=64 * MiB, pids=50, devices=(DeviceThrottle("read_bps", 8, 0, 1),))
    merged = base.merged(Resources(cpu_quota=50_000, pids=80, devices=(DeviceThrottle("read_bps", 8, 0, 9),)))
    assert merged.memory == 64 * MiB and merged.pids == 80 and merged.cpus == 0.5
    assert merged.devices == (DeviceThrottle("read_bps", 8, 0, 9),)


def test_oci_form() -> None:
    assert oci_resources(Resources()) == {}
    r = Resources(
        memory=64 * MiB,
        memory_reservation=32 * MiB,
        cpu_quota=50_000,
        cpu_shares=512,
        pids=20,
        devices=(DeviceThrottle("read_bps", 254, 0, MiB), DeviceThrottle("write_iops", 254, 0, 100)),
    )
    assert oci_resources(r) == {
        "memory": {"limit": 64 * MiB, "swap": 64 * MiB, "reservation": 32 * MiB},
        "cpu": {"quota": 50_000, "period": 100_000, "shares": 512},
        "pids": {"limit": 20},
        "blockIO": {
            "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": MiB}],
            "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}],
        },
    }


def test_build_config_keeps_devices_beside_limits() -> None:
    from engine.runtime.idmap import IdRange
    from engine.runtime.oci_spec import BundleSpec, ProcessSpec, build_config

    spec = BundleSpec(
        process=ProcessSpec(args=("true",), env=(), cwd="/", uid=0, gid=0),
        hostname="h",
        id_range=IdRange(100000),
        cgroups_path="/i/tenants/t/c",
        resources=oci_resources(Resources(memory=64 * MiB)),
    )
    res = build_config(spec)["linux"]["resources"]
    assert res["memory"]["limit"] == 64 * MiB
    assert res["devices"][0] == {"allow": False, "access": "rwm"}


def test_host_capacity_from_meminfo(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    meminfo = Path(tmp_path) / "meminfo"
    meminfo.write_text("MemTotal:       24684096 kB\nMemFree:  1 kB\n")
    cap = HostCapacity.detect(meminfo)
    assert cap.memory == 24684096 * 1024
    assert cap.cpus == os.cpu_count()


def test_describe_and_format() -> None:
    assert format_bytes(None) == "unlimited"
    assert format_bytes(256 * MiB) == "256MiB"
    assert format_bytes(512) == "512B"
    d = Resources(memory=256 * MiB, cpu_quota=50_000).describe()
    assert (d["memory"], d["cpus"], d["pids"]) == ("256MiB", "0.5", "unlimited")


def test_cli_options_build_resources() -> None:
    from engine.cli.stats import resources_from_args

    args = SimpleNamespace(
        memory="256m",
        memory_reservation=None,
        cpus="0.5",
        cpu_shares="512",
        pids_limit="100",
        device_read_bps=[],
        device_write_bps=[],
        device_read_iops=[],
        device_write_iops=[],
    )
    r = resources_from_args(args)  # type: ignore[arg-type]
    assert (r.memory, r.cpu_quota, r.cpu_shares, r.pids) == (256 * MiB, 50_000, 512, 100)
