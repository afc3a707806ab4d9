"""Pure translations of the container endpoints: request -> ContainerSpec, Container -> Docker JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.cgroups.resources import Resources
from engine.dockerapi.create import parse_create
from engine.dockerapi.record import DockerRecord, HealthState
from engine.dockerapi.render import endpoint_aliases, human_duration, inspect_json, status_text, summary_json
from engine.dockerapi.translate import container_spec
from engine.networks.model import PortMapping
from engine.runtime.model import Container
from engine.volumes.spec import MountSpec

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def iso(delta: timedelta) -> str:
    return (NOW - delta).isoformat().replace("+00:00", "Z")


def spec_of(body: dict[str, object], **kwargs: object):  # type: ignore[no-untyped-def]
    names = iter(f"anon{i}" for i in range(10))
    return container_spec(
        parse_create(body),
        name=kwargs.get("name", "web"),  # type: ignore[arg-type]
        tenant="default",
        anonymous_name=lambda: next(names),
        free_port=lambda protocol, ip: 40000 if protocol == "tcp" else 40001,
    )


def test_a_full_body_becomes_the_engine_spec() -> None:
    spec = spec_of(
        {
            "Image": "busybox",
            "Cmd": ["sleep", "1"],
            "Entrypoint": ["/bin/env"],
            "Env": ["A=1"],
            "Labels": {"x": "y"},
            "WorkingDir": "/srv",
            "User": "1000",
            "Hostname": "h",
            "StopSignal": "SIGINT",
            "StopTimeout": 4,
            "ExposedPorts": {"9090/tcp": {}},
            "Volumes": {"/cache": {}},
            "HostConfig": {
                "Init": True,
                "Memory": 64 << 20,
                "MemoryReservation": 32 << 20,
                "NanoCpus": 1_500_000_000,
                "CpuShares": 512,
                "PidsLimit": 20,
                "NetworkMode": "appnet",
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{}]},
                "PublishAllPorts": True,
                "Binds": ["data:/data:ro"],
                "Tmpfs": {"/run": "size=2m"},
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
            },
            "NetworkingConfig": {"EndpointsConfig": {"appnet": {"Aliases": ["api"]}}},
        }
    )
    assert spec.image == "busybox" and spec.name == "web" and spec.tenant == "default"
    assert spec.command == ("sleep", "1") and spec.entrypoint == ("/bin/env",)
    assert spec.env == ("A=1",) and spec.labels == {"x": "y"}
    assert (spec.workdir, spec.user, spec.hostname) == ("/srv", "1000", "h")
    assert spec.init and spec.stop_signal == "SIGINT" and spec.stop_timeout == 4
    assert spec.resources == Resources(
        memory=64 << 20,
        memory_reservation=32 << 20,
        cpu_quota=150_000,
        cpu_period=100_000,
        cpu_shares=512,
        pids=20,
    )
    assert spec.network == "appnet" and spec.network_aliases == ("api",)
    assert set(spec.ports) == {
        PortMapping(8080, 80, "tcp", "127.0.0.1"),
        PortMapping(40001, 53, "udp", "0.0.0.0"),
        PortMapping(40000, 9090, "tcp", "0.0.0.0"),
    }
    assert spec.mounts == (
        MountSpec("tmpfs", "/run", size=2 << 20),
        MountSpec("volume", "/data", source="data", read_only=True),
        MountSpec("volume", "/cache", source="anon0"),
    )
    assert (spec.log.max_size, spec.log.max_files) == (1 << 20, 2)


def test_defaults_follow_docker() -> None:
    spec = spec_of({"Image": "busybox"}, name=None)
    assert spec.name is None and spec.command == () and spec.entrypoint is None
    assert spec.network == "bridge" and spec.stop_timeout == 10 and spec.resources == Resources()
    assert spec_of({"Image": "busybox", "Entrypoint": [""]}).entrypoint == ()
    quota = spec_of({"Image": "busybox", "HostConfig": {"CpuQuota": 25000, "CpuPeriod": 50000}}).resources
    assert (quota.cpu_quota, quota.cpu_period) == (25000, 50000)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (130, "2 minutes"),
        (3600, "About an hour"),
        (3 * 3600, "3 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_durations_read_like_docker_ps(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def container(**fields: object) -> Container:
    base: dict[str, object] = {
        "id": "ab" * 32,
        "name": "web",
        "tenant": "default",
        "image": "busybox",
        "image_id": "sha256:" + "cd" * 32,
        "command": ["/.hpinit", "--", "sleep", "60"],
        "status": "running",
        "created": iso(timedelta(minutes=5)),
        "started_at": iso(timedelta(seconds=30)),
        "init": True,
        "pid": 4321,
        "labels": {"a": "b c"},
        "network": "bridge.default",
        "ip_address": "10.88.0.2",
        "network_aliases": ["api"],
        "ports": [PortMapping(8080, 80).to_dict()],
        "mounts": [
            MountSpec("volume", "/data", source="data").to_dict(),
            MountSpec("tmpfs", "/run", size=1).to_dict(),
        ],
    }
    base.update(fields)
    return Container(**base)  # type: ignore[arg-type]


def test_inspect_has_dockers_shape() -> None:
    record = DockerRecord(cmd=["sleep", "60"], exposed_ports=["80/tcp", "443/tcp"], restart_count=2)
    record.healthcheck = {"Test": ["CMD", "true"]}
    record.health = HealthState("healthy", 0, [{"ExitCode": 0}])
    data = inspect_json(container(), record, log_path="/x/ctr.log")
    assert data["Name"] == "/web" and data["Path"] == "sleep" and data["Args"] == ["60"]
    assert data["Image"].startswith("sha256:") and data["RestartCount"] == 2
    state = data["State"]
    assert state["Status"] == "running" and state["Running"] and state["Pid"] == 4321
    assert state["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert state["Health"] == {"Status": "healthy", "FailingStreak": 0, "Log": [{"ExitCode": 0}]}
    assert data["Config"]["Labels"] == {"a": "b c"} and data["Config"]["Cmd"] == ["sleep", "60"]
    assert data["Config"]["Healthcheck"] == {"Test": ["CMD", "true"]}
    assert data["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
        "443/tcp": None,
    }
    assert list(data["NetworkSettings"]["Networks"]) == ["bridge"]
    assert data["NetworkSettings"]["Networks"]["bridge"]["Aliases"] == ["api"]
    assert [m["Type"] for m in data["Mounts"]] == ["volume", "tmpfs"]


def test_a_user_defined_networks_aliases_end_with_the_short_id() -> None:
    # what dockerd shows up to API 1.44; compose 1.29 reconnects (disconnect, connect) without it
    on_project = container(network="proj_back", network_aliases=["kv"])
    assert endpoint_aliases(on_project, "proj_back") == ["kv", "ab" * 6]
    data = inspect_json(on_project, DockerRecord())
    assert data["NetworkSettings"]["Networks"]["proj_back"]["Aliases"] == ["kv", "ab" * 6]
    assert data["NetworkSettings"]["Networks"]["proj_back"]["DNSNames"] == ["web", "ab" * 6, "kv"]
    # the default network has no short id alias (as dockerd's default bridge), nor does a container
    # without an address
    assert endpoint_aliases(container(), "bridge") == ["api"]
    assert endpoint_aliases(container(network="proj_back", ip_address=""), "proj_back") == ["api"]


def test_an_oom_killed_container_is_exited_with_oomkilled() -> None:
    data = inspect_json(container(status="oom-killed", exit_code=137, pid=0), DockerRecord())
    assert data["State"]["Status"] == "exited" and data["State"]["OOMKilled"] is True
    assert data["State"]["ExitCode"] == 137 and "Health" not in data["State"]


def test_list_items_read_like_docker_ps() -> None:
    record = DockerRecord(exposed_ports=["443/tcp"])
    item = summary_json(container(), record, NOW)
    assert item["Names"] == ["/web"] and item["Command"] == "sleep 60" and item["State"] == "running"
    assert item["Status"] == "Up 30 seconds"
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"} in item["Ports"]
    assert {"PrivatePort": 443, "Type": "tcp"} in item["Ports"]
    exited = container(status="exited", exit_code=3, finished_at=iso(timedelta(minutes=2)))
    assert status_text(exited, record, NOW) == "Exited (3) 2 minutes ago"
    assert status_text(container(status="created", started_at=""), record, NOW) == "Created"
    record.healthcheck = {"Test": ["CMD", "true"]}
    assert status_text(container(), record, NOW) == "Up 30 seconds (health: starting)"
