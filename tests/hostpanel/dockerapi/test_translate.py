"""Pure translation: a create body into the panel's AppSpec, the panel's rows into Docker's shapes."""

from __future__ import annotations

import datetime

import pytest

from engine.dockerapi.http import APIError
from hostpanel.dockerapi import translate
from hostpanel.dockerapi.create import parse

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def test_a_cli_style_body_becomes_one_replica_of_an_app() -> None:
    body = {
        "Image": "busybox",
        "Cmd": ["sleep", "60"],
        "Env": ["A=1", "B=x=y"],
        "Labels": {"com.example": "v"},
        "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {
            "Memory": 64 * 1024**2,
            "NanoCpus": 500_000_000,
            "PidsLimit": 50,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": ""}]},
            "Binds": ["data:/data"],
            "Privileged": False,
            "CapAdd": None,
        },
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 10_000_000_000},
    }
    out = parse(body)
    spec = out.spec
    assert (spec.image, spec.command, spec.env) == ("busybox", ["sleep", "60"], {"A": "1", "B": "x=y"})
    assert (spec.memory_bytes, spec.cpu_millis, spec.pids, spec.replicas) == (64 * 1024**2, 500, 50, 1)
    assert spec.restart_policy == "on-failure:3"
    assert spec.ports == [{"container_port": 80, "protocol": "tcp"}] and spec.network == "bridge"
    assert spec.volumes == [{"name": "data", "path": "/data"}]
    assert spec.health_check == {"command": ["sh", "-c", "true"], "interval": 10.0}
    assert out.shown["Labels"] == {"com.example": "v"} and out.warnings == []


def test_defaults_are_dockers_restart_no_and_the_panels_resources() -> None:
    spec = parse({"Image": "busybox"}).spec
    assert spec.restart_policy == "no" and spec.command == [] and spec.network == "bridge"
    assert parse({"Image": "busybox", "HostConfig": {"NetworkMode": "none"}}).spec.network == "none"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Image": "busybox", "User": "1000"}, "User"),
        ({"Image": "busybox", "WorkingDir": "/srv"}, "WorkingDir"),
        ({"Image": "busybox", "Entrypoint": ["/bin/sh"]}, "Entrypoint"),
        ({"Image": "busybox", "HostConfig": {"Init": True}}, "Init"),
        ({"Image": "busybox", "HostConfig": {"Tmpfs": {"/run": ""}}}, "Tmpfs"),
        ({"Image": "busybox", "Volumes": {"/data": {}}}, "anonymous volume"),
        ({"Image": "busybox", "HostConfig": {"NetworkMode": "mynet"}}, "NetworkMode"),
    ],
)
def test_what_the_panel_cannot_do_yet_is_a_400_naming_it(body: dict[str, object], field: str) -> None:
    with pytest.raises(APIError) as caught:
        parse(body)
    assert caught.value.status == 400 and field in caught.value.message


def test_unsafe_fields_are_the_engines_403() -> None:
    with pytest.raises(APIError) as caught:
        parse({"Image": "busybox", "HostConfig": {"Privileged": True}})
    assert caught.value.status == 403 and "Privileged" in caught.value.message


def test_host_ports_are_the_panels_with_a_warning() -> None:
    out = parse({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}})
    assert out.spec.ports == [{"container_port": 80, "protocol": "tcp"}]
    assert "the panel picks the host port" in out.warnings[0]


def state(**kw: object) -> translate.ContainerState:
    values: dict[str, object] = {
        "app_running": True,
        "replica_state": "running",
        "exit_code": None,
        "started_at": NOW - datetime.timedelta(seconds=5),
        "finished_at": None,
    } | kw
    return translate.state_of(**values)  # type: ignore[arg-type]


def test_states_in_dockers_words() -> None:
    assert state().status == "running" and state().running
    assert state(app_running=False, replica_state="stopped", started_at=None).status == "created"
    exited = state(replica_state="exited", exit_code=3, finished_at=NOW - datetime.timedelta(seconds=2))
    assert (exited.status, exited.exit_code) == ("exited", 3)
    assert state(replica_state="backoff").status == "restarting"
    assert state(app_running=False, replica_state="stopped").status == "exited"


def test_status_texts_as_docker_ps_writes_them() -> None:
    assert translate.status_text(state(), NOW) == "Up 5 seconds"
    exited = state(replica_state="exited", exit_code=1, finished_at=NOW - datetime.timedelta(minutes=3))
    assert translate.status_text(exited, NOW) == "Exited (1) 3 minutes ago"
    created = state(app_running=False, replica_state="stopped", started_at=None)
    assert translate.status_text(created, NOW) == "Created"


def view(**kw: object) -> translate.ContainerView:
    values: dict[str, object] = {
        "id": "ab" * 32,
        "name": "web",
        "image": "busybox:latest",
        "command": ["sleep", "60"],
        "created": NOW,
        "state": state(),
        "config": {"Image": "busybox", "Labels": {"tier": "front", "x": "1"}},
        "restart_policy": "on-failure:2",
        "restart_count": 0,
        "memory_bytes": 1,
        "cpu_millis": 250,
        "pids": 10,
        "network": "bridge",
        "ports": [{"container_port": 80, "protocol": "tcp", "host_port": 30001}],
        "volumes": [],
        "host": "h1",
    } | kw
    return translate.ContainerView(**values)  # type: ignore[arg-type]


def test_list_and_inspect_shapes() -> None:
    item = translate.list_item(view(), NOW)
    assert item["Names"] == ["/web"] and item["Image"] == "busybox" and item["Command"] == "sleep 60"
    assert item["Ports"] == [{"PrivatePort": 80, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 30001}]
    doc = translate.inspect_document(view())
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert doc["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "30001"}]}
    assert doc["Config"]["Labels"] == {"tier": "front", "x": "1"} and doc["State"]["Running"] is True


def test_filters() -> None:
    v = view()
    assert translate.matches_filters(v, {"label": ["tier=front"]})
    assert not translate.matches_filters(v, {"label": ["tier=back"]})
    assert translate.matches_filters(v, {"name": ["we"], "status": ["running"], "ancestor": ["busybox"]})
    assert not translate.matches_filters(v, {"status": ["exited"]})
    assert translate.matches_filters(v, {"id": ["abab"]})
    assert translate.matches_filters(v, {"name": ["^web$"]}) and translate.matches_filters(
        v, {"name": ["/web"]}
    )
    assert not translate.matches_filters(v, {"name": ["^eb"]}) and not translate.matches_filters(
        v, {"name": ["(a+)+$"]}
    )


def test_docker_names_map_onto_app_names() -> None:
    assert translate.app_name_for("/my_web.1") == "my-web-1"
    assert translate.app_name_for("Web") == "web"
    assert translate.app_name_for("x" * 41) is None
