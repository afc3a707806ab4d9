"""engine.compose.deploy without containers: names, the health check form, the engine spec."""

from __future__ import annotations

from typing import Any

import pytest

from engine.compose import HealthcheckDef, load_project
from engine.compose.deploy import (
    LABEL_DIGEST,
    LABEL_PROJECT,
    Deployment,
    _Prepared,
    project_name,
    to_docker_check,
)
from engine.errors import InvalidSpec, NotFound
from engine.networks.model import NetworkJoin
from engine.volumes.spec import MountSpec


class FakeEngine:
    """Only what container_spec touches: anonymous volumes."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, str]]] = []

    def volume(self, name: str) -> None:
        raise NotFound(name)

    def volume_create(self, name: str, *, tenant: str, labels: dict[str, str]) -> None:
        self.created.append((name, labels))


@pytest.mark.parametrize(("given", "expected"), [("My App", "myapp"), ("_x.y-z", "xy-z"), ("web_1", "web_1")])
def test_project_name(given: str, expected: str) -> None:
    assert project_name(given) == expected


def test_project_name_refused() -> None:
    with pytest.raises(InvalidSpec, match="-p NAME"):
        project_name("???")


def test_docker_check() -> None:
    check = to_docker_check(HealthcheckDef(("curl -f x",), True, 2.0, 0.5, 1.0, 4))
    assert check.test == ("CMD-SHELL", "curl -f x")
    assert (check.interval, check.timeout, check.start_period, check.retries) == (
        2 * 10**9,
        5 * 10**8,
        10**9,
        4,
    )
    assert to_docker_check(HealthcheckDef(("true",))).test == ("CMD", "true")


def test_container_spec() -> None:
    project = load_project(
        """
services:
  web:
    image: busybox
    command: [httpd, -f]
    environment: {A: "1"}
    ports: ["8080:80"]
    volumes: [data:/data:ro, /anon, {type: tmpfs, target: /t}]
    networks: {front: {aliases: [site]}, back: {}}
    deploy: {resources: {limits: {cpus: 0.5, memory: 64m, pids: 20}}}
    stop_grace_period: 3s
    labels: {team: a}
networks: {front: {}, back: {external: true}}
volumes: {data: {}}
""",
        name="shop",
    )
    engine: Any = FakeEngine()
    deployment = Deployment(engine, "shop")
    spec = deployment.container_spec(
        project, project.services["web"], 2, "d1", _Prepared(refs={"web": "busybox"}, images={"web": "i"})
    )
    assert spec.name == "shop-web-2" and spec.image == "busybox" and spec.command == ("httpd", "-f")
    assert spec.env == ("A=1",)
    assert spec.networks == (NetworkJoin("shop_front", ("web", "site")), NetworkJoin("back", ("web",)))
    assert [(p.host_port, p.container_port) for p in spec.ports] == [(8080, 80)]
    (anonymous, labels) = engine.created[0]
    assert anonymous.startswith("shop_web-2_") and labels[LABEL_PROJECT] == "shop"
    assert spec.mounts == (
        MountSpec("volume", "/data", "shop_data", True),
        MountSpec("volume", "/anon", anonymous),
        MountSpec("tmpfs", "/t", size=64 * 1024 * 1024),
    )
    assert not spec.allow_privileged
    assert (spec.resources.cpus, spec.resources.memory, spec.resources.pids) == (0.5, 64 * 1024**2, 20)
    assert spec.stop_timeout == 3
    assert spec.labels["team"] == "a" and spec.labels[LABEL_DIGEST] == "d1"
