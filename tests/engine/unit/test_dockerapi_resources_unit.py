"""Pure translation of the Docker API's image, build, volume and network requests and answers."""

from __future__ import annotations

import base64
import json
import socket
import threading
from typing import Any

import pytest

from engine.build.model import Cancellation
from engine.dockerapi import build, images, networks, transfer, volumes
from engine.dockerapi.filters import bool_filter, labels_match, parse_filters
from engine.dockerapi.http import APIError, Stream
from engine.dockerapi.progress import Emit, Message, client_gone, streamed
from engine.errors import InvalidSpec
from engine.images.model import Image, ImageConfig
from engine.networks.manager import OverlayOptions
from engine.networks.model import Network
from engine.registry import BlobProgress
from engine.volumes.model import Volume

IMAGE = Image(
    id="sha256:" + "a" * 64,
    digest="sha256:" + "b" * 64,
    repo_tags=("web:1", "web:latest"),
    created="2024-05-01T12:00:00Z",
    size=1234,
    layers=("sha256:" + "c" * 64, "sha256:" + "d" * 64),
    config=ImageConfig(labels={"a": "b"}),
)


def _auth(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def test_filters_both_forms_and_unknown_names() -> None:
    assert parse_filters({"label": ["a=b"], "dangling": {"true": True}}, ("label", "dangling")) == {
        "label": ["a=b"],
        "dangling": ["true"],
    }
    with pytest.raises(APIError) as exc:
        parse_filters({"until": ["1h"]}, ("label",))
    assert exc.value.status == 400 and "'until'" in exc.value.message
    with pytest.raises(APIError):
        parse_filters(["label"], ("label",))
    assert bool_filter({"dangling": ["TRUE"]}, "dangling") is True
    assert bool_filter({"dangling": ["0"]}, "dangling") is False
    assert bool_filter({}, "dangling") is None
    for bad in (["maybe"], ["true", "false"]):
        with pytest.raises(APIError):
            bool_filter({"dangling": bad}, "dangling")
    assert labels_match({"a": "b", "c": ""}, ["a", "a=b", "c="])
    assert not labels_match({"a": "b"}, ["a=c"])
    assert not labels_match(None, ["a"])


def test_image_summary_inspect_and_history() -> None:
    summary = images.image_summary(IMAGE, containers=2)
    assert summary["Id"] == IMAGE.id and summary["RepoTags"] == ["web:1", "web:latest"]
    assert summary["Created"] == 1714564800 and summary["Labels"] == {"a": "b"} and summary["Containers"] == 2

    raw = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["A=1"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "b"}},
        "history": [
            {"created": "2024-05-01T11:00:00Z", "created_by": "ADD rootfs"},
            {"created": "2024-05-01T11:30:00Z", "created_by": "ENV A=1", "empty_layer": True},
            {"created": "2024-05-01T12:00:00Z", "created_by": "RUN make"},
        ],
    }
    data = images.image_inspect(IMAGE, raw)
    assert data["Config"]["Env"] == ["A=1"] and data["Config"]["Entrypoint"] is None
    assert data["Config"]["ExposedPorts"] == {"80/tcp": {}} and data["Config"]["Labels"] == {"a": "b"}
    assert "StopSignal" not in data["Config"] and data["Config"]["User"] == ""
    assert data["RootFS"] == {"Type": "layers", "Layers": list(IMAGE.layers)}
    # API 1.44's deprecated build-container fields, which compose 1.29 reads on a recreate
    assert data["Container"] == "" and data["ContainerConfig"]["Volumes"] is None
    assert data["ContainerConfig"]["Env"] is None and data["ContainerConfig"]["Cmd"] is None

    history = images.image_history(IMAGE, raw, [100, 200])
    assert [h["CreatedBy"] for h in history] == ["RUN make", "ENV A=1", "ADD rootfs"]
    assert [h["Size"] for h in history] == [200, 0, 100]
    assert history[0]["Id"] == IMAGE.id and history[0]["Tags"] == ["web:1", "web:latest"]
    assert history[1]["Id"] == "<missing>"
    assert images.image_history(IMAGE, {}, [])[0]["Size"] == 1234


def test_removal_report_and_reference_filter() -> None:
    lines = ["Untagged: web:1", "Deleted: sha256:" + "a" * 64]
    assert images.removal_report(lines) == [{"Untagged": "web:1"}, {"Deleted": "sha256:" + "a" * 64}]
    assert images.tag_matches("web:1", "web")
    assert images.tag_matches("reg:5000/team/web:1", "reg:5000/team/*")
    assert images.tag_matches("web:1", "web:1") and not images.tag_matches("web:1", "web:2")
    assert not images.tag_matches("webby:1", "web")


def test_registry_auth_header() -> None:
    creds = transfer.parse_registry_auth(_auth({"username": "u", "password": "p", "serveraddress": "r"}))
    assert creds is not None and (creds.username, creds.password) == ("u", "p")
    assert "p" not in repr(creds)
    assert transfer.parse_registry_auth(None) is None
    assert transfer.parse_registry_auth(_auth({})) is None
    for bad in ("!!!not-base64", base64.b64encode(b"[1]").decode(), _auth({"username": 3})):
        with pytest.raises(APIError) as exc:
            transfer.parse_registry_auth(bad)
        assert exc.value.status == 400
    with pytest.raises(APIError) as exc:
        transfer.parse_registry_auth(_auth({"identitytoken": "tok"}))
    assert "identity token" in exc.value.message


def test_insecure_registries_and_pull_references() -> None:
    assert transfer.is_insecure("127.0.0.1:5000") and transfer.is_insecure("localhost:5000")
    assert transfer.is_insecure("[::1]:5000")
    assert not transfer.is_insecure("registry.example:5000")
    assert transfer.is_insecure("registry.example:5000", "other:1, registry.example:5000")
    assert transfer.pull_reference("reg:5000/team/app", "1") == "reg:5000/team/app:1"
    assert transfer.pull_reference("reg:5000/team/app:2", "") == "reg:5000/team/app:2"
    digest = "sha256:" + "e" * 64
    assert transfer.pull_reference("app", digest) == f"app@{digest}"
    with pytest.raises(APIError):
        transfer.pull_reference("", "1")


def test_progress_messages() -> None:
    digest = "sha256:" + "f" * 64
    moving = BlobProgress(digest, "transferring", 10, 100)
    assert transfer.progress_message(moving, transfer._PULL_STATUS) == {
        "status": "Downloading",
        "progressDetail": {"current": 10, "total": 100},
        "id": "f" * 12,
    }
    done = BlobProgress(digest, "complete", 100, 100)
    assert transfer.progress_message(done, transfer._PUSH_STATUS)["status"] == "Pushed"  # type: ignore[index]
    assert (
        transfer.progress_message(BlobProgress(digest, "exists", 1, 1, "config"), transfer._PULL_STATUS)
        is None
    )


def test_build_options_are_checked() -> None:
    build.check_options({"t": ["x"], "pull": ["False"], "networkmode": ["default"], "memory": ["0"]})
    with pytest.raises(APIError) as exc:
        build.check_options({"networkmode": ["host"]})
    assert exc.value.status == 403 and "networkmode" in exc.value.message
    with pytest.raises(APIError) as exc:
        build.check_options({"extrahosts": ["metadata:169.254.169.254"]})
    assert exc.value.status == 403
    for name, value in (
        ("memory", "1000000"),
        ("remote", "https://x/y.git"),
        ("squash", "1"),
        ("bogus", "1"),
    ):
        with pytest.raises(APIError) as exc:
            build.check_options({name: [value]})
        assert exc.value.status == 400 and name in exc.value.message
    with pytest.raises(APIError):
        build.check_options({"version": ["2"]})
    assert build.string_map({"A": "1", "B": None}, "buildargs") == {"A": "1"}
    with pytest.raises(APIError):
        build.string_map({"A": 1}, "labels")
    assert str(build.dockerfile_path("")) == "Dockerfile"
    assert str(build.dockerfile_path("sub/Dockerfile.dev")) == "sub/Dockerfile.dev"
    for bad in ("/etc/shadow", "../Dockerfile", "a/../../b"):
        with pytest.raises(APIError):
            build.dockerfile_path(bad)
    logins = build.registry_logins(
        _auth(
            {
                "reg:5000": {"username": "u", "password": "p"},
                "https://index.docker.io/v1/": {"username": "hub", "password": "q"},
                "empty:1": {},
            }
        )
    )
    assert sorted(logins) == ["index.docker.io", "reg:5000"]
    assert (logins["reg:5000"].username, logins["reg:5000"].password) == ("u", "p")
    assert build.registry_logins(None) == {}
    for bad in ("%%%", _auth({"reg:5000": "user:pass"})):  # type: ignore[dict-item]
        with pytest.raises(APIError):
            build.registry_logins(bad)
    dockerfile = (
        "ARG V=1\nFROM reg:5000/team/base:1 AS base\nFROM base\nFROM scratch\n"
        "FROM busybox:$V\nFROM BASE\nFROM reg:5000/team/base:1\nFROM busybox\n"
    )
    assert build.base_images(dockerfile, "Dockerfile") == ["reg:5000/team/base:1", "busybox"]
    closing = build.closing_messages(IMAGE.id, ["web:1", "web:2"])
    assert closing[0] == {"aux": {"ID": IMAGE.id}}
    assert [m["stream"] for m in closing[1:]] == [
        "Successfully built aaaaaaaaaaaa\n",
        "Successfully tagged web:1\n",
        "Successfully tagged web:2\n",
    ]
    assert build.closing_messages(IMAGE.id, ["web:1"], quiet=True)[1] == {"stream": IMAGE.id + "\n"}


def test_volume_create_and_json() -> None:
    assert volumes.parse_create({"Name": "v", "Labels": {"a": "b"}}) == ("v", None, {"a": "b"})
    assert (
        volumes.parse_create({"Name": "v", "Driver": "local", "DriverOpts": {"size": "16m"}})[1] == 16 << 20
    )
    name, _, _ = volumes.parse_create({})
    assert len(name) == 64
    with pytest.raises(APIError) as exc:
        volumes.parse_create({"Name": "v", "Driver": "rexray"})
    assert exc.value.status == 400 and "'rexray'" in exc.value.message
    with pytest.raises(APIError) as exc:
        volumes.parse_create({"Name": "v", "DriverOpts": {"device": "/dev/sda"}})
    assert exc.value.status == 403 and "DriverOpts.device" in exc.value.message
    with pytest.raises(APIError):
        volumes.parse_create({"Name": "v", "Bogus": 1})
    with pytest.raises(InvalidSpec):
        volumes.parse_create({"Name": "v", "DriverOpts": {"size": "lots"}})
    volume = Volume("v", "default", "dir", 0, 100000, "2024-05-01T12:00:00Z", labels={"a": "b"})
    shown = volumes.volume_json(volume, "/x/_data", (10, 1))
    assert shown["Labels"] == {"a": "b"} and shown["Options"] is None
    assert shown["UsageData"] == {"Size": 10, "RefCount": 1}
    assert "UsageData" not in volumes.volume_json(volume, "/x/_data")


def test_network_create_and_json() -> None:
    args = networks.parse_create(
        {
            "Name": "n",
            "CheckDuplicate": True,
            "Internal": True,
            "Labels": {"a": "b"},
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]},
        }
    )
    assert args == {
        "name": "n",
        "driver": "bridge",
        "internal": True,
        "subnet": "10.9.0.0/24",
        "labels": {"a": "b"},
        "overlay": None,
    }
    overlay = networks.parse_create(
        {
            "Name": "ov",
            "Driver": "overlay",
            "Options": {"hostpanel.peers": "10.0.0.2, 10.0.0.3", "hostpanel.vni": "42"},
            "IPAM": {"Config": [{"Subnet": "10.240.0.0/16", "IPRange": "10.240.1.0/24"}]},
        }
    )
    assert overlay["subnet"] == "10.240.0.0/16"
    assert overlay["overlay"] == OverlayOptions(
        peers=("10.0.0.2", "10.0.0.3"), vni=42, ip_range="10.240.1.0/24"
    )
    refusals: list[tuple[dict[str, Any], int, str]] = [
        (
            {"Name": "o", "Driver": "overlay", "Options": {"com.docker.network.driver.mtu": "9000"}},
            403,
            "Options.",
        ),
        (
            {
                "Name": "o",
                "Driver": "overlay",
                "Options": {"hostpanel.peers": "1.2.3.4", "hostpanel.vni": "x"},
            },
            400,
            "vni",
        ),
        ({"Name": "o", "Driver": "overlay"}, 400, "hostpanel.peers"),
        (
            {
                "Name": "o",
                "Driver": "overlay",
                "IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.1"}]},
            },
            400,
            "no gateway",
        ),
        (
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.0/25"}]}},
            400,
            "IPRange",
        ),
        ({"Name": "n", "Driver": "macvlan"}, 400, "macvlan"),
        ({"Name": "n", "Options": {"com.docker.network.bridge.name": "eth0"}}, 403, "Options.com.docker"),
        ({"Name": "n", "EnableIPv6": True}, 400, "EnableIPv6"),
        (
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.7"}]}},
            400,
            "Gateway",
        ),
        ({"Name": "n", "IPAM": {"Config": [{"Subnet": "x"}]}}, 400, "invalid subnet"),
        ({"Name": "n", "IPAM": {"Driver": "dhcp"}}, 400, "dhcp"),
        ({"Driver": "bridge"}, 400, "Name"),
        ({"Name": "n", "Unknown": 1}, 400, "Unknown"),
    ]
    for body, status, text in refusals:
        with pytest.raises(APIError) as exc:
            networks.parse_create(body)
        assert exc.value.status == status and text in exc.value.message, body
    net = Network("n", "f" * 64, "default", "bridge", "10.9.0.0/24", "10.9.0.1", "br0", labels={"a": "b"})
    shown = networks.network_json(net, {"c" * 64: {"name": "web", "ip": "10.9.0.2", "aliases": []}})
    assert shown["Containers"]["c" * 64] == {
        "Name": "web",
        "EndpointID": "c" * 64,
        "MacAddress": "",
        "IPv4Address": "10.9.0.2/24",
        "IPv6Address": "",
    }
    assert shown["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]
    assert shown["Labels"] == {"a": "b"}


def _body(stream: Stream) -> list[Message]:
    return [json.loads(line) for chunk in stream.chunks for line in chunk.splitlines() if line]


def test_streamed_errors_before_and_after_the_first_message() -> None:
    def fails_at_once(emit: Emit) -> list[Message]:
        raise InvalidSpec("bad reference")

    with pytest.raises(InvalidSpec):
        streamed(fails_at_once)

    def fails_later(emit: Emit) -> list[Message]:
        emit({"status": "working"})
        raise InvalidSpec("layer is broken")

    assert _body(streamed(fails_later)) == [
        {"status": "working"},
        {"errorDetail": {"message": "layer is broken"}, "error": "layer is broken"},
    ]

    def works(emit: Emit) -> list[Message]:
        emit({"stream": "step\n"})
        return [{"aux": {"ID": "x"}}]

    assert _body(streamed(works)) == [{"stream": "step\n"}, {"aux": {"ID": "x"}}]


def test_an_abandoned_stream_calls_on_abandon_and_a_finished_one_does_not() -> None:
    release = threading.Event()
    abandoned: list[bool] = []

    def slow(emit: Emit) -> list[Message]:
        emit({"stream": "first\n"})
        release.wait(10)
        return []

    chunks = iter(streamed(slow, on_abandon=lambda: abandoned.append(True)).chunks)
    assert json.loads(next(chunks)) == {"stream": "first\n"}
    chunks.close()  # type: ignore[attr-defined]  # what the server does when the client has gone
    release.set()
    assert abandoned == [True]

    def quick(emit: Emit) -> list[Message]:
        emit({"stream": "x\n"})
        return [{"aux": {"ID": "y"}}]

    assert len(_body(streamed(quick, on_abandon=lambda: abandoned.append(False)))) == 2
    assert abandoned == [True]


def test_cancellation_calls_back_once_even_when_registered_late() -> None:
    calls: list[str] = []
    cancel = Cancellation()
    cancel.on_cancel(lambda: calls.append("early"))
    cancel.cancel()
    cancel.cancel()
    cancel.on_cancel(lambda: calls.append("late"))
    assert calls == ["early", "late"] and cancel.cancelled


def test_client_gone_sees_a_closed_peer_but_not_a_quiet_one() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert not client_gone(ours)
        theirs.sendall(b"GET /next")  # a pipelined request is not a departure
        assert not client_gone(ours)
        assert ours.recv(100) == b"GET /next"
        theirs.close()
        assert client_gone(ours)
    finally:
        ours.close()


def test_volume_filters_are_one_rule_for_both_doors() -> None:
    volume_selected = volumes.volume_selected
    labels = {"app": "shop", "tier": "db"}
    assert volume_selected("shop-data", labels, True, {})
    every_kind = {"name": ["shop"], "label": ["app=shop"], "driver": ["local"]}
    assert volume_selected("shop-data", labels, True, every_kind)
    assert not volume_selected("shop-data", labels, True, {"name": ["blog"]})
    assert not volume_selected("shop-data", labels, True, {"driver": ["nfs"]})
    assert not volume_selected("shop-data", labels, True, {"label": ["app=blog"]})
    assert volume_selected("shop-data", labels, False, {"dangling": ["true"]})
    assert not volume_selected("shop-data", labels, True, {"dangling": ["true"]})
    assert volume_selected("shop-data", labels, True, {"dangling": ["false"]})
