"""Hostile create bodies: every forbidden field is a 403 naming it, and nothing is left behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.engine import Engine
from engine.images.model import Image
from tests.engine.conftest import leaks
from tests.engine.dockerapi_support import DockerAPI, serving_api

FORBIDDEN: list[tuple[dict[str, Any], str]] = [
    ({"Privileged": True}, "HostConfig.Privileged"),
    ({"CapAdd": ["SYS_ADMIN"]}, "HostConfig.CapAdd"),
    ({"CapAdd": ["ALL"]}, "HostConfig.CapAdd"),
    (
        {
            "Devices": [
                {"PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/kmsg", "CgroupPermissions": "rwm"}
            ]
        },
        "HostConfig.Devices",
    ),
    (
        {"DeviceRequests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]},
        "HostConfig.DeviceRequests",
    ),
    ({"DeviceCgroupRules": ["a *:* rwm"]}, "HostConfig.DeviceCgroupRules"),
    ({"PidMode": "host"}, "HostConfig.PidMode"),
    ({"IpcMode": "host"}, "HostConfig.IpcMode"),
    ({"UTSMode": "host"}, "HostConfig.UTSMode"),
    ({"UsernsMode": "host"}, "HostConfig.UsernsMode"),
    ({"CgroupnsMode": "host"}, "HostConfig.CgroupnsMode"),
    ({"NetworkMode": "host"}, "HostConfig.NetworkMode"),
    ({"Binds": ["/:/host"]}, "HostConfig.Binds"),
    ({"Binds": ["/etc/shadow:/shadow:ro"]}, "HostConfig.Binds"),
    ({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}, "HostConfig.Mounts"),
    (
        {
            "Mounts": [
                {
                    "Type": "volume",
                    "Source": "sneaky",
                    "Target": "/x",
                    "VolumeOptions": {
                        "DriverConfig": {
                            "Name": "local",
                            "Options": {"type": "none", "o": "bind", "device": "/etc"},
                        }
                    },
                }
            ]
        },
        "HostConfig.Mounts",
    ),
    ({"SecurityOpt": ["seccomp=unconfined"]}, "HostConfig.SecurityOpt"),
    ({"SecurityOpt": ["apparmor=unconfined"]}, "HostConfig.SecurityOpt"),
    ({"SecurityOpt": ["label=disable"]}, "HostConfig.SecurityOpt"),
    ({"SecurityOpt": ["no-new-privileges=false"]}, "HostConfig.SecurityOpt"),
    ({"Sysctls": {"kernel.shm_rmid_forced": "1"}}, "HostConfig.Sysctls"),
    ({"CgroupParent": "/hostile"}, "HostConfig.CgroupParent"),
    ({"VolumeDriver": "sshfs"}, "HostConfig.VolumeDriver"),
    ({"Runtime": "runc"}, "HostConfig.Runtime"),
    ({"OomKillDisable": True}, "HostConfig.OomKillDisable"),
    ({"MaskedPaths": []}, "HostConfig.MaskedPaths"),
]


@pytest.fixture()
def api(engine: Engine, busybox: Image) -> Iterator[DockerAPI]:
    with serving_api(engine) as served:
        yield served


def create(api: DockerAPI, host: dict[str, Any] | None = None, **config: Any) -> tuple[int, Any]:
    body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": host or {}, **config}
    return api.request("POST", "/containers/create?name=hostile", body)


def nothing_left(api: DockerAPI) -> None:
    assert api.containers() == []
    assert api.engine.volume_list() == []
    assert leaks(api.engine.paths.root, api.engine.instance) == []


def test_every_forbidden_host_config_field_is_refused_and_leaves_nothing(api: DockerAPI) -> None:
    for host, field in FORBIDDEN:
        status, answer = create(api, host)
        assert status == 403, (host, answer)
        assert answer["message"].startswith(f"{field} is refused"), answer
        nothing_left(api)


@pytest.mark.parametrize("user", ["65536", "0:70000", "4294967295"])
def test_a_user_outside_the_container_range_is_refused(api: DockerAPI, user: str) -> None:
    status, answer = create(api, User=user)
    assert status == 403 and answer["message"].startswith("User is refused")
    nothing_left(api)


def test_the_cli_says_which_field_was_refused(api: DockerAPI) -> None:
    for flags, field in (
        (["--privileged"], "HostConfig.Privileged"),
        (["--cap-add", "NET_ADMIN"], "HostConfig.CapAdd"),
        (["--pid", "host"], "HostConfig.PidMode"),
        (["--network", "host"], "HostConfig.NetworkMode"),
        (["-v", "/etc:/host-etc"], "HostConfig.Binds"),
        (["--device", "/dev/kmsg"], "HostConfig.Devices"),
        (["--security-opt", "seccomp=unconfined"], "HostConfig.SecurityOpt"),
        (["--sysctl", "net.ipv4.ip_forward=1"], "HostConfig.Sysctls"),
        (["-l", "org.hostpanel.replica=42"], "Labels"),
        (["--user", "70000"], "User"),
    ):
        result = api.cli("run", "--rm", *flags, "busybox", "true", check=False)
        assert result.returncode == 125, flags
        assert field in result.stderr, (flags, result.stderr)
    nothing_left(api)


def test_a_privileged_exec_is_refused(api: DockerAPI) -> None:
    api.cli("run", "-d", "--name", "target", "busybox", "sleep", "60")
    result = api.cli("exec", "--privileged", "target", "true", check=False)
    assert result.returncode != 0 and "Privileged is refused" in result.stderr
    status, answer = api.request("POST", "/containers/target/exec", {"Cmd": ["id"], "User": "70000"})
    assert status == 403 and answer["message"].startswith("User is refused")


def test_bad_json_is_a_400_and_creates_nothing(api: DockerAPI) -> None:
    status, answer = api.request("POST", "/containers/create", raw=b'{"Image": "busybox", ')
    assert status == 400 and "not valid JSON" in answer["message"]
    status, answer = api.request("POST", "/containers/create", raw=b'["busybox"]')
    assert status == 400 and "JSON object" in answer["message"]
    status, answer = create(api, Env="A=1", Cmd=5)
    assert status == 400
    nothing_left(api)


def test_an_unknown_image_is_a_404_and_creates_nothing(api: DockerAPI) -> None:
    status, answer = api.request(
        "POST", "/containers/create", {"Image": "no-such-image:1.0", "Cmd": ["true"]}
    )
    assert status == 404 and answer["message"] == "No such image: no-such-image:1.0"
    status, answer = api.request("POST", "/containers/create", {"Cmd": ["true"]})
    assert status == 400 and "Image" in answer["message"]
    nothing_left(api)


def test_a_bad_name_or_unknown_network_creates_nothing(api: DockerAPI) -> None:
    status, answer = api.request(
        "POST", "/containers/create?name=../etc", {"Image": "busybox", "Cmd": ["true"]}
    )
    assert status == 400 and "Invalid container name" in answer["message"]
    status, answer = create(api, {"NetworkMode": "no-such-net"})
    assert status == 404, answer
    status, answer = create(api, {"Tmpfs": {"/proc": "size=1m"}})
    assert status == 400, answer
    nothing_left(api)


def test_a_bad_list_filter_is_a_400(api: DockerAPI) -> None:
    status, answer = api.request("GET", "/containers/json?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D")
    assert status == 400 and "colour" in answer["message"]
    status, answer = api.request("GET", "/containers/json?filters=%7B%22status%22%3A%5B%22sleepy%22%5D%7D")
    assert status == 400 and "sleepy" in answer["message"]
