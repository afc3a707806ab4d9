"""Pure parts of the events, stats, top and rename endpoints: Docker's shapes and bad input."""

from __future__ import annotations

import pytest

from engine.cgroups.controller import CgroupStats
from engine.dockerapi.control import new_name, top_json
from engine.dockerapi.events import docker_event, parse_window
from engine.dockerapi.http import APIError
from engine.dockerapi.stats import ZERO_TIME, Sample, stats_json
from engine.events import Event
from engine.runtime.model import Container
from engine.runtime.procfs import NetCounters, ProcessRow

SECOND = 1_000_000_000


def _container() -> Container:
    return Container(
        id="c" * 64,
        name="web",
        tenant="t",
        image="busybox",
        image_id="sha256:x",
        command=[],
        status="running",
        created="",
    )


def test_a_container_event_carries_the_legacy_fields() -> None:
    e = Event(
        "container", "die", "c1", {"name": "web", "image": "busybox", "exitCode": "3"}, "t", 5 * SECOND + 7
    )
    assert docker_event(e) == {
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": "c1", "Attributes": {"name": "web", "image": "busybox", "exitCode": "3"}},
        "scope": "local",
        "time": 5,
        "timeNano": 5 * SECOND + 7,
        "status": "die",
        "id": "c1",
        "from": "busybox",
    }


def test_network_and_volume_events_have_only_the_new_fields() -> None:
    data = docker_event(Event("network", "connect", "n1", {"container": "c1"}, "t", SECOND))
    assert set(data) == {"Type", "Action", "Actor", "scope", "time", "timeNano"}


def test_the_event_window() -> None:
    assert parse_window("", "", now_ns=42) == (42, None)  # neither: only what happens from now on
    assert parse_window("1700000000.5", "", now_ns=0) == (1_700_000_000 * SECOND + SECOND // 2, None)
    assert parse_window("", "2023-11-14T22:13:20Z", now_ns=0) == (None, 1_700_000_000 * SECOND)
    with pytest.raises(APIError) as bad:
        parse_window("soon", "", now_ns=0)
    assert bad.value.status == 400 and "invalid time 'soon'" in bad.value.message
    with pytest.raises(APIError, match="until must not be before since"):
        parse_window("20", "10", now_ns=0)


def test_stats_shape_that_docker_stats_reads() -> None:
    reading = CgroupStats(
        cpu_usage_ns=3 * SECOND,
        memory_usage=10 << 20,
        memory_limit=64 << 20,
        pids=2,
        pids_limit=100,
        io_read_bytes=4096,
        io_write_bytes=8192,
    )
    before = Sample("2026-01-01T00:00:00.000000Z", reading, 100 * SECOND)
    after_reading = CgroupStats(cpu_usage_ns=4 * SECOND, memory_usage=11 << 20, memory_limit=None, pids=3)
    eth0 = NetCounters(rx_bytes=1000, tx_bytes=2000)
    after = Sample("2026-01-01T00:00:01.000000Z", after_reading, 102 * SECOND, {"eth0": eth0})
    data = stats_json(_container(), after, before, cpus=2, host_memory=1 << 30)
    assert (data["name"], data["id"]) == ("/web", "c" * 64)
    assert (data["read"], data["preread"]) == (after.read, before.read)
    cpu, pre = data["cpu_stats"], data["precpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] == 4 * SECOND and pre["cpu_usage"]["total_usage"] == 3 * SECOND
    assert (cpu["system_cpu_usage"], pre["system_cpu_usage"], cpu["online_cpus"]) == (
        102 * SECOND,
        100 * SECOND,
        2,
    )
    # the CLI's formula: one core busy for one of the two host seconds on two CPUs is 100%
    delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    assert delta / system * cpu["online_cpus"] * 100 == 100.0
    assert data["memory_stats"] == {"usage": 11 << 20, "limit": 1 << 30, "stats": {}}  # no limit: the host's
    assert data["pids_stats"] == {"current": 3}
    assert data["networks"]["eth0"]["rx_bytes"] == 1000 and data["networks"]["eth0"]["tx_bytes"] == 2000
    ops = {e["op"]: e["value"] for e in data["blkio_stats"]["io_service_bytes_recursive"]}
    assert ops == {"read": 0, "write": 0}
    first = stats_json(_container(), before, None, cpus=2, host_memory=1 << 30)
    assert first["preread"] == ZERO_TIME and first["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert first["memory_stats"]["limit"] == 64 << 20 and first["pids_stats"] == {"current": 2, "limit": 100}
    assert "networks" not in first


def test_stats_of_a_stopped_container_are_zeros() -> None:
    data = stats_json(_container(), Sample("now", None, 5), None, cpus=2, host_memory=1 << 30)
    assert data["read"] == ZERO_TIME and data["memory_stats"] == {} and data["pids_stats"] == {}
    assert data["cpu_stats"]["online_cpus"] == 0 and data["blkio_stats"]["io_service_bytes_recursive"] is None


def test_top_answer() -> None:
    row = ProcessRow("100000", 42, 40, "0", "10:00", "?", "00:00:01", "sleep 5")
    assert top_json([row]) == {
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": [["100000", "42", "40", "0", "10:00", "?", "00:00:01", "sleep 5"]],
    }


@pytest.mark.parametrize("raw", ["", "/", "a", "bad/name", "-x", "a b", "../x"])
def test_bad_new_names_are_400s(raw: str) -> None:
    with pytest.raises(APIError) as bad:
        new_name(raw)
    assert bad.value.status == 400


def test_a_new_name_loses_its_slash() -> None:
    assert new_name("/web2") == "web2" and new_name("ab") == "ab"
