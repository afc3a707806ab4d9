"""docker-py's high-level API drives a container's whole life through the operator's socket."""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest
from docker.errors import APIError, ContainerError, NotFound

from engine.engine import Engine
from engine.images.model import Image
from tests.engine.dockerapi_support import serving_api


@pytest.fixture()
def client(engine: Engine, busybox: Image) -> Iterator[docker.DockerClient]:
    with serving_api(engine) as served:
        client = docker.DockerClient(base_url=served.host, version="auto", timeout=120)
        try:
            yield client
        finally:
            client.close()


def test_lifecycle(client: docker.DockerClient) -> None:
    labels = {"com.example.role": "web", "com.docker.compose.config-hash": "a b=c"}
    container = client.containers.run(
        "busybox",
        ["sh", "-c", "echo hello; echo problem >&2; sleep 60"],
        detach=True,
        name="pyweb",
        labels=labels,
        environment={"MODE": "test"},
        mem_limit="64m",
    )
    container.reload()
    assert container.status == "running"
    assert container.name == "pyweb"
    assert container.labels == labels
    deadline = time.monotonic() + 30
    while b"hello" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert container.logs(stdout=True, stderr=False) == b"hello\n"
    assert container.logs(stdout=False, stderr=True) == b"problem\n"

    result = container.exec_run(["sh", "-c", "echo $MODE; echo to-err >&2; exit 5"])
    assert result.exit_code == 5
    assert result.output == b"test\nto-err\n"
    out, err = container.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True).output
    assert (out, err) == (b"o\n", b"e\n")

    assert [c.name for c in client.containers.list(filters={"label": "com.example.role=web"})] == ["pyweb"]
    assert client.containers.list(filters={"label": "com.example.role=db"}) == []
    assert client.containers.list(filters={"status": "exited"}) == []

    container.stop(timeout=1)
    container.reload()
    assert container.status == "exited"
    assert [c.name for c in client.containers.list(all=True, filters={"status": "exited"})] == ["pyweb"]
    assert container.wait()["StatusCode"] == 137
    container.remove()
    with pytest.raises(NotFound):
        client.containers.get("pyweb")


def test_run_in_the_foreground(client: docker.DockerClient) -> None:
    assert client.containers.run("busybox", ["echo", "sync"], remove=True) == b"sync\n"
    with pytest.raises(ContainerError) as info:
        client.containers.run("busybox", ["sh", "-c", "exit 2"], remove=True)
    assert info.value.exit_status == 2
    deadline = time.monotonic() + 30
    while client.containers.list(all=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.containers.list(all=True) == []


def test_refusals_reach_docker_py_as_errors(client: docker.DockerClient) -> None:
    with pytest.raises(APIError) as info:
        client.containers.run("busybox", "true", privileged=True, detach=True)
    assert info.value.status_code == 403 and "HostConfig.Privileged" in str(info.value)
    with pytest.raises(APIError) as info:
        client.containers.run("busybox", "true", volumes={"/etc": {"bind": "/x", "mode": "ro"}}, detach=True)
    assert info.value.status_code == 403 and "HostConfig.Binds" in str(info.value)
    assert client.containers.list(all=True) == []


def test_a_compose_style_create_is_accepted(client: docker.DockerClient, engine: Engine) -> None:
    """What docker-compose 1.29 sends through docker-py's low-level API (API 1.41, a project network)."""
    engine.network_create("proj_default")
    api = client.api
    host_config = api.create_host_config(
        links=[],
        port_bindings={80: None},
        binds=["proj_data:/data:rw"],
        log_config={"Type": "", "Config": {}},
        network_mode="proj_default",
        restart_policy={"Name": "always"},
        volumes_from=[],
        init=None,
    )
    networking = api.create_networking_config(
        {"proj_default": api.create_endpoint_config(aliases=["web", "a1b2c3"])}
    )
    labels = {"com.docker.compose.project": "proj", "com.docker.compose.service": "web"}
    created = api.create_container(
        "busybox",
        command=["sleep", "60"],
        name="proj_web_1",
        environment={"MODE": "compose"},
        labels=labels,
        host_config=host_config,
        networking_config=networking,
        volumes=["/data"],  # compose repeats the bind's target here
        ports=[80],
        healthcheck={"test": ["CMD-SHELL", "true"], "interval": 1_000_000_000, "retries": 3},
        stop_signal="SIGTERM",
    )
    api.start(created)
    info = api.inspect_container(created)
    assert info["State"]["Running"] and info["Config"]["Labels"] == labels
    assert list(info["NetworkSettings"]["Networks"]) == ["proj_default"]
    # API 1.44 lists the short id after the aliases (compose 1.x looks for it, or else reconnects)
    assert info["NetworkSettings"]["Networks"]["proj_default"]["Aliases"] == [
        "web",
        "a1b2c3",
        created["Id"][:12],
    ]
    assert int(info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]) > 0
    assert [(m["Name"], m["Destination"]) for m in info["Mounts"]] == [("proj_data", "/data")]
    listed = api.containers(all=True, filters={"label": ["com.docker.compose.project=proj"]})
    assert [c["Names"] for c in listed] == [["/proj_web_1"]]
    api.remove_container(created, force=True, v=True)
    engine.volume_remove("proj_data")
