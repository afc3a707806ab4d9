"""The create-body translation: every refused field is a 403 naming it, every parsed field comes back."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dockerapi.create import (
    DEFAULT_TMPFS_SIZE,
    Healthcheck,
    MountRequest,
    PortBinding,
    RestartPolicy,
    parse_create,
    refuse_unsafe,
    with_image_defaults,
)
from engine.dockerapi.http import APIError
from engine.networks.model import NetworkJoin

# What `docker run --rm busybox echo hi` (CLI 28.2) sends, trimmed to the fields that matter here
# plus every zero value it sends, which must never count as asking for something.
CLI_DEFAULT_HOST_CONFIG: dict[str, Any] = {
    "Binds": None,
    "ContainerIDFile": "",
    "LogConfig": {"Type": "", "Config": {}},
    "NetworkMode": "default",
    "PortBindings": {},
    "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": True,
    "VolumeDriver": "",
    "VolumesFrom": None,
    "ConsoleSize": [0, 0],
    "CapAdd": None,
    "CapDrop": None,
    "CgroupnsMode": "",
    "Dns": [],
    "DnsOptions": [],
    "DnsSearch": [],
    "ExtraHosts": None,
    "GroupAdd": None,
    "IpcMode": "",
    "Cgroup": "",
    "Links": None,
    "OomScoreAdj": 0,
    "PidMode": "",
    "Privileged": False,
    "PublishAllPorts": False,
    "ReadonlyRootfs": False,
    "SecurityOpt": None,
    "UTSMode": "",
    "UsernsMode": "",
    "ShmSize": 0,
    "Isolation": "",
    "CpuShares": 0,
    "Memory": 0,
    "NanoCpus": 0,
    "CgroupParent": "",
    "BlkioWeight": 0,
    "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [],
    "CpuPeriod": 0,
    "CpuQuota": 0,
    "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0,
    "CpusetCpus": "",
    "CpusetMems": "",
    "Devices": [],
    "DeviceCgroupRules": None,
    "DeviceRequests": None,
    "MemoryReservation": 0,
    "MemorySwap": 0,
    "MemorySwappiness": -1,
    "OomKillDisable": False,
    "PidsLimit": 0,
    "Ulimits": [],
    "CpuCount": 0,
    "CpuPercent": 0,
    "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
    "MaskedPaths": None,
    "ReadonlyPaths": None,
}


def body(host: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    """A CLI-shaped create body with ``config`` and ``host`` overriding its fields."""
    data: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": ["echo", "hi"],
        "Image": "busybox",
        "Volumes": {},
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {},
        "HostConfig": {**CLI_DEFAULT_HOST_CONFIG, **(host or {})},
        "NetworkingConfig": {
            "EndpointsConfig": {
                "default": {
                    "IPAMConfig": None,
                    "Links": None,
                    "Aliases": None,
                    "MacAddress": "",
                    "DriverOpts": None,
                }
            }
        },
    }
    data.update(config)
    return data


def refused(data: Any) -> APIError:
    with pytest.raises(APIError) as info:
        parse_create(data)
    assert info.value.status == 403, info.value.message
    return info.value


def test_the_cli_default_body_parses() -> None:
    request = parse_create(body())
    assert request.image == "busybox"
    assert request.cmd == ("echo", "hi")
    assert request.entrypoint is None
    assert request.auto_remove is True
    assert request.network_mode == "bridge"
    assert request.restart_policy == RestartPolicy("no", 0)
    assert request.memory is None and request.nano_cpus is None and request.pids_limit is None
    assert request.mounts == () and request.tmpfs == () and request.ports == ()
    assert request.attach_stdout and request.attach_stderr and not request.attach_stdin


def test_every_supported_field_is_parsed() -> None:
    labels = {"com.docker.compose.project": "p", "weird key": "v=1,2", "empty": ""}
    request = parse_create(
        body(
            {
                "Binds": ["data:/data:ro", "cache:/cache"],
                "Mounts": [
                    {"Type": "volume", "Source": "v2", "Target": "/v2", "ReadOnly": True},
                    {
                        "Type": "tmpfs",
                        "Target": "/scratch",
                        "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700},
                    },
                ],
                "Tmpfs": {"/run": "rw,size=1m,mode=1777", "/tmp": ""},
                "NetworkMode": "mynet",
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{}]},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "AutoRemove": False,
                "Memory": 64 << 20,
                "MemoryReservation": 32 << 20,
                "NanoCpus": 500_000_000,
                "CpuShares": 512,
                "PidsLimit": 50,
                "Init": True,
                "CapAdd": ["CAP_CHOWN", "kill"],
                "SecurityOpt": ["no-new-privileges"],
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
            },
            Hostname="h",
            User="1000:1000",
            Env=["A=1", "B="],
            Cmd=["sh"],
            Entrypoint=[""],
            WorkingDir="/tmp",
            Labels=labels,
            Tty=True,
            OpenStdin=True,
            StopSignal="SIGINT",
            StopTimeout=3,
            ExposedPorts={"80/tcp": {}},
            Volumes={"/anon": {}},
            Healthcheck={"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000, "Retries": 2},
            NetworkingConfig={"EndpointsConfig": {"mynet": {"Aliases": ["al", "web"]}}},
        )
    )
    assert request.hostname == "h" and request.user == "1000:1000" and request.workdir == "/tmp"
    assert request.env == ("A=1", "B=")
    assert request.cmd == ("sh",)
    assert request.entrypoint == ()
    assert request.labels == labels
    assert request.tty and request.open_stdin
    assert request.stop_signal == "SIGINT" and request.stop_timeout == 3
    assert request.init is True
    assert request.healthcheck == Healthcheck(("CMD-SHELL", "true"), interval=2_000_000_000, retries=2)
    assert request.restart_policy == RestartPolicy("on-failure", 3)
    assert request.memory == 64 << 20 and request.memory_reservation == 32 << 20
    assert request.nano_cpus == 500_000_000 and request.cpu_shares == 512 and request.pids_limit == 50
    assert request.exposed_ports == ("80/tcp",)
    assert set(request.ports) == {PortBinding(80, "tcp", "127.0.0.1", 8080), PortBinding(53, "udp", "", 0)}
    assert request.tmpfs == (
        MountRequest("tmpfs", "/run", size=1 << 20, mode=0o1777),
        MountRequest("tmpfs", "/tmp", size=DEFAULT_TMPFS_SIZE),
    )
    assert request.mounts == (
        MountRequest("volume", "/data", source="data", read_only=True),
        MountRequest("volume", "/cache", source="cache"),
        MountRequest("volume", "/v2", source="v2", read_only=True),
        MountRequest("tmpfs", "/scratch", size=1 << 20, mode=0o700),
        MountRequest("volume", "/anon"),
    )
    assert request.network_mode == "mynet" and request.aliases == ("al", "web")
    assert request.log_max_size == 1 << 20 and request.log_max_files == 2


def test_a_docker_py_body_without_host_config_parses() -> None:
    request = parse_create({"Image": "busybox", "Cmd": "true", "Labels": {"a": "b"}})
    assert request.cmd == ("true",) and request.labels == {"a": "b"}
    assert request.network_mode == "bridge"


@pytest.mark.parametrize(
    ("host", "field"),
    [
        ({"Privileged": True}, "HostConfig.Privileged"),
        ({"CapAdd": ["SYS_ADMIN"]}, "HostConfig.CapAdd"),
        ({"CapAdd": ["ALL"]}, "HostConfig.CapAdd"),
        ({"CapAdd": ["CAP_NET_ADMIN"]}, "HostConfig.CapAdd"),
        ({"CapAdd": ["NET_RAW"]}, "HostConfig.CapAdd"),
        (
            {
                "Devices": [
                    {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}
                ]
            },
            "HostConfig.Devices",
        ),
        ({"DeviceRequests": [{"Driver": "nvidia", "Count": -1}]}, "HostConfig.DeviceRequests"),
        ({"DeviceCgroupRules": ["c 1:3 mr"]}, "HostConfig.DeviceCgroupRules"),
        ({"PidMode": "host"}, "HostConfig.PidMode"),
        ({"PidMode": "container:other"}, "HostConfig.PidMode"),
        ({"IpcMode": "host"}, "HostConfig.IpcMode"),
        ({"IpcMode": "container:other"}, "HostConfig.IpcMode"),
        ({"UTSMode": "host"}, "HostConfig.UTSMode"),
        ({"UsernsMode": "host"}, "HostConfig.UsernsMode"),
        ({"CgroupnsMode": "host"}, "HostConfig.CgroupnsMode"),
        ({"NetworkMode": "host"}, "HostConfig.NetworkMode"),
        ({"NetworkMode": "container:other"}, "HostConfig.NetworkMode"),
        ({"Binds": ["/etc:/host-etc"]}, "HostConfig.Binds"),
        ({"Binds": ["./here:/x"]}, "HostConfig.Binds"),
        ({"Binds": ["~/x:/x:ro"]}, "HostConfig.Binds"),
        ({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}, "HostConfig.Mounts"),
        (
            {"Mounts": [{"Source": "/", "Target": "/host", "BindOptions": {"Propagation": "rshared"}}]},
            "HostConfig.Mounts",
        ),
        ({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}, "HostConfig.Mounts"),
        (
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "v",
                        "Target": "/v",
                        "VolumeOptions": {
                            "DriverConfig": {
                                "Name": "local",
                                "Options": {"type": "none", "o": "bind", "device": "/"},
                            }
                        },
                    }
                ]
            },
            "HostConfig.Mounts",
        ),
        (
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "v",
                        "Target": "/v",
                        "VolumeOptions": {"DriverConfig": {"Name": "sshfs"}},
                    }
                ]
            },
            "HostConfig.Mounts",
        ),
        ({"SecurityOpt": ["seccomp=unconfined"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["seccomp:unconfined"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["seccomp={}"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["apparmor=unconfined"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["label=disable"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["label:disable"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["no-new-privileges=false"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["no-new-privileges:false"]}, "HostConfig.SecurityOpt"),
        ({"SecurityOpt": ["systempaths=unconfined"]}, "HostConfig.SecurityOpt"),
        ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "HostConfig.Sysctls"),
        ({"CgroupParent": "/"}, "HostConfig.CgroupParent"),
        ({"VolumeDriver": "sshfs"}, "HostConfig.VolumeDriver"),
        ({"Runtime": "runc"}, "HostConfig.Runtime"),
        ({"OomKillDisable": True}, "HostConfig.OomKillDisable"),
        ({"MaskedPaths": []}, "HostConfig.MaskedPaths"),
        ({"ReadonlyPaths": []}, "HostConfig.ReadonlyPaths"),
        ({"VolumesFrom": ["other"]}, "HostConfig.VolumesFrom"),
        ({"Cgroup": "container:other"}, "HostConfig.Cgroup"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 1 << 20, "Hard": 1 << 20}]}, "HostConfig.Ulimits"),
        ({"CapDrop": ["ALL"]}, "HostConfig.CapDrop"),
        ({"Tmpfs": {"/x": "size=1m,exec"}}, "HostConfig.Tmpfs"),
        ({"Tmpfs": {"/x": "suid"}}, "HostConfig.Tmpfs"),
        ({"Tmpfs": {"/x": "dev"}}, "HostConfig.Tmpfs"),
        ({"SomethingNew": {"x": 1}}, "HostConfig.SomethingNew"),
        ({"LogConfig": {"Type": "syslog", "Config": {}}}, "HostConfig.LogConfig"),
    ],
)
def test_unsafe_host_config_is_refused_naming_the_field(host: dict[str, Any], field: str) -> None:
    error = refused(body(host))
    assert error.message.startswith(f"{field} is refused"), error.message


@pytest.mark.parametrize("user", ["65536", "4294967295", "-1", "1000:65536", "0:100000", "root:70000"])
def test_a_user_outside_the_container_range_is_refused(user: str) -> None:
    assert refused(body(User=user)).message.startswith("User is refused")


@pytest.mark.parametrize("user", ["0", "65535", "1000:1000", "nobody", "www-data:www-data", "root:0"])
def test_a_user_inside_the_range_is_accepted(user: str) -> None:
    assert parse_create(body(User=user)).user == user


def test_an_unknown_config_field_is_refused() -> None:
    assert refused(body(Secrets=["x"])).message.startswith("Secrets is refused")


def test_default_caps_and_no_new_privileges_are_accepted() -> None:
    refuse_unsafe(body({"CapAdd": ["CHOWN", "CAP_KILL", "net_bind_service"]}))
    refuse_unsafe(body({"SecurityOpt": ["no-new-privileges", "no-new-privileges:true"]}))
    refuse_unsafe(body({"IpcMode": "private", "CgroupnsMode": "private", "IpcMode2": None}))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "request body"),
        ({"Cmd": ["true"]}, "Image"),
        (body(Image=""), "Image"),
        (body(Cmd="x", Env=[1]), "Env"),
        (body(Env=["=x"]), "Env"),
        (body(Labels={"a": 1}), "Labels"),
        (body(Tty="yes"), "Tty"),
        (body(StopTimeout=-1), "StopTimeout"),
        (body(StopSignal="SIG KILL"), "StopSignal"),
        (body(Healthcheck={"Test": ["WHAT", "x"]}), "Healthcheck.Test"),
        (body(Healthcheck={"Test": ["CMD"]}), "Healthcheck.Test"),
        (body(Healthcheck={"Test": ["CMD", "x"], "Interval": 5}), "Healthcheck.Interval"),
        (body({"Memory": -1}), "HostConfig.Memory"),
        (body({"Memory": "64m"}), "HostConfig.Memory"),
        (body({"RestartPolicy": {"Name": "sometimes"}}), "HostConfig.RestartPolicy.Name"),
        (
            body({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}, "AutoRemove": False}),
            "HostConfig.RestartPolicy",
        ),
        (body({"PortBindings": {"80/sctp": []}}), "HostConfig.PortBindings"),
        (body({"PortBindings": {"http": []}}), "HostConfig.PortBindings"),
        (body({"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}}), "HostConfig.PortBindings"),
        (body({"Tmpfs": {"/x": "size=lots"}}), "HostConfig.Tmpfs"),
        (body({"Tmpfs": {"/x": "mode=999"}}), "HostConfig.Tmpfs"),
        (body({"Binds": ["novolume"]}), "HostConfig.Binds"),
        (body({"Binds": ["v:/x:shared"]}), "HostConfig.Binds"),
        (body({"LogConfig": {"Type": "json-file", "Config": {"max-file": "0"}}}), "HostConfig.LogConfig"),
        (body(NetworkingConfig={"EndpointsConfig": {"a": {"Aliases": 3}}}), "EndpointsConfig[a].Aliases"),
        (body(NetworkingConfig={"EndpointsConfig": {"a": {}, "b": {}}}), "NetworkingConfig.EndpointsConfig"),
        (body(NetworkingConfig={"EndpointsConfig": {"other": {}}}), "NetworkingConfig.EndpointsConfig"),
        (body(NetworkingConfig={"EndpointsConfig": {"a": []}}), "EndpointsConfig[a]"),
    ],
)
def test_a_malformed_field_is_a_400_naming_it(data: Any, field: str) -> None:
    with pytest.raises(APIError) as info:
        parse_create(data)
    assert info.value.status == 400
    assert field in info.value.message


def test_auto_remove_with_a_restart_policy_conflicts() -> None:
    with pytest.raises(APIError) as info:
        parse_create(body({"RestartPolicy": {"Name": "always"}}))
    assert info.value.status == 400 and "AutoRemove" in info.value.message


def test_nano_cpus_and_cpu_quota_conflict() -> None:
    with pytest.raises(APIError) as info:
        parse_create(body({"NanoCpus": 10**9, "CpuQuota": 50000}))
    assert info.value.status == 400


def test_network_disabled_means_none() -> None:
    assert parse_create(body(NetworkDisabled=True)).network_mode == "none"


def test_a_static_address_is_refused() -> None:
    data = body(
        NetworkingConfig={"EndpointsConfig": {"default": {"IPAMConfig": {"IPv4Address": "10.0.0.9"}}}}
    )
    assert refused(data).message.startswith("NetworkingConfig.EndpointsConfig[default].IPAMConfig is refused")


def test_several_endpoints_join_several_networks_in_the_order_sent() -> None:
    endpoints = {"front": {"Aliases": ["web"]}, "back": {"Aliases": ["api"]}, "side": None}
    request = parse_create(
        body({"NetworkMode": "front"}, NetworkingConfig={"EndpointsConfig": endpoints}), several_networks=True
    )
    assert (request.network_mode, request.aliases) == ("front", ("web",))
    assert request.networks == (NetworkJoin("back", ("api",)), NetworkJoin("side"))
    # without a NetworkMode (docker-py's networking_config alone) the first endpoint is the main one
    request = parse_create(
        body({"NetworkMode": ""}, NetworkingConfig={"EndpointsConfig": {"back": {"Aliases": ["api"]}}}),
        several_networks=True,
    )
    assert (request.network_mode, request.aliases, request.networks) == ("back", ("api",), ())
    assert (
        parse_create(body({"NetworkMode": "none"}, NetworkDisabled=True), several_networks=True).networks
        == ()
    )
    # the default (the tenants' door): one network, another endpoint is a 400 naming it
    with pytest.raises(APIError, match="'back' is not the NetworkMode 'front'"):
        parse_create(body({"NetworkMode": "front"}, NetworkingConfig={"EndpointsConfig": endpoints}))


def test_a_volumes_entry_covered_by_a_bind_or_tmpfs_is_not_an_anonymous_volume() -> None:
    # docker-compose sends both Binds ["data:/data"] and Volumes {"/data": {}}
    request = parse_create(
        body(
            {"Binds": ["data:/data"], "Tmpfs": {"/run": ""}}, Volumes={"/data/": {}, "/run": {}, "/cache": {}}
        )
    )
    assert request.mounts == (
        MountRequest("volume", "/data", source="data"),
        MountRequest("volume", "/cache"),
    )


@pytest.mark.parametrize("key", ["org.hostpanel.replica", "org.hostpanel.spec", "ORG.HostPanel.app"])
def test_hostpanels_own_labels_are_refused(key: str) -> None:
    # the host agent adopts a container carrying org.hostpanel.replica as that replica
    assert refused(body(Labels={key: "1"})).message.startswith("Labels is refused")


def test_other_labels_are_fine() -> None:
    assert parse_create(body(Labels={"org.hostpanelish": "x", "com.docker.compose.service": "web"})).labels


def test_an_images_volumes_and_ports_complete_the_request() -> None:
    request = with_image_defaults(
        parse_create(body({"Binds": ["db:/var/lib/db"]}, ExposedPorts={"80/tcp": {}})),
        volumes=["/var/lib/db/", "/cache"],
        exposed_ports=["80/tcp", "53/udp", "8080"],
    )
    assert request.mounts == (
        MountRequest("volume", "/var/lib/db", source="db"),
        MountRequest("volume", "/cache"),
    )
    assert request.exposed_ports == ("80/tcp", "53/udp", "8080/tcp")
    plain = parse_create(body())
    assert with_image_defaults(plain, volumes=[], exposed_ports=[]) == plain
