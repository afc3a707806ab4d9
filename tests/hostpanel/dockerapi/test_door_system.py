"""docker network ls/inspect/create/rm, docker events and docker system df against the tenants'
door: the tenant's own view only."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.images.models import Image
from hostpanel.tenants.models import Tenant
from tests.hostpanel.dockerapi.conftest import DOCKER, Client
from tests.hostpanel.dockerapi.test_door_cli import member
from tests.hostpanel.factories import HostFactory, TenantFactory

pytestmark = pytest.mark.slow


@pytest.fixture
def tenants(door: Any) -> tuple[Tenant, Tenant]:
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    HostFactory(name="h1")
    return TenantFactory(slug="acme"), TenantFactory(slug="bolt")


def test_network_ls_inspect_and_clear_refusals(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    docker = docker_as(member(acme), acme)
    listed = docker.ok("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines()
    assert listed == ["bridge bridge local", "none null local"]
    (bridge,) = docker.json("network", "inspect", "bridge")
    assert bridge["Name"] == "bridge" and bridge["Driver"] == "bridge" and len(bridge["Id"]) == 64
    assert docker.json("network", "inspect", bridge["Id"][:12])[0]["Name"] == "bridge"
    other = docker_as(member(bolt), bolt).json("network", "inspect", "bridge")[0]
    assert other["Id"] != bridge["Id"]  # each tenant's bridge is its own
    assert (
        docker.ok("network", "ls", "-q", "--filter", "driver=null").strip()
        == docker.json("network", "inspect", "none")[0]["Id"][:12]
    )
    result = docker("network", "create", "backend")
    assert result.returncode != 0 and "networks API (issue 14)" in result.stderr, result.stderr
    result = docker("network", "rm", "bridge")
    assert result.returncode != 0 and "pre-defined network" in result.stderr, result.stderr
    result = docker("network", "inspect", "backend")
    assert result.returncode != 0 and "network backend not found" in result.stderr, result.stderr


def test_events_show_the_tenants_own_writes_only(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    docker = docker_as(member(acme), acme)
    thief = docker_as(member(bolt), bolt)
    since = str(int(time.time()) - 1)
    # a follower started first sees the volume made while it listens
    follower = subprocess.Popen(
        [DOCKER, "events", "--filter", "type=volume", "--format", "{{json .}}"],
        env=docker.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # the follower's request is in before the write (events start from now)
        docker.ok("volume", "create", "data")
        assert follower.stdout is not None
        seen = json.loads(follower.stdout.readline())
        assert seen["Type"] == "volume" and seen["Action"] == "create" and seen["Actor"]["ID"] == "data"
    finally:
        follower.terminate()
        follower.wait(10)
    container_id = docker.ok("create", "--name", "web", "busybox", "sleep", "60").strip()
    thief.ok("volume", "create", "loot")
    until = str(int(time.time()) + 1)
    lines = docker.ok("events", "--since", since, "--until", until, "--format", "{{json .}}").splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["Type"], e["Action"]) for e in events] == [("volume", "create"), ("container", "create")]
    created = events[1]
    assert created["Actor"]["ID"] == container_id and created["Actor"]["Attributes"]["name"] == "web"
    assert created["Actor"]["Attributes"]["image"] == "busybox"
    filtered = docker.ok("events", "--since", since, "--until", until, "--filter", "container=web")
    assert "container create" in filtered and "volume" not in filtered
    theirs = thief.ok("events", "--since", since, "--until", until, "--format", "{{.Actor.ID}}").split()
    assert theirs == ["loot"]


def test_system_df_counts_the_tenants_own_things(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    Image.objects.create(reference="acme/web:1", tenant=acme, size=2048, sha256="a" * 64, archive="/x.tar")
    Image.objects.create(reference="bolt/secret:1", tenant=bolt, size=4096, sha256="b" * 64, archive="/y.tar")
    docker = docker_as(member(acme), acme)
    docker.ok("volume", "create", "data")
    docker.ok("create", "--name", "web", "busybox", "sleep", "60")
    kinds = [json.loads(line) for line in docker.ok("system", "df", "--format", "{{json .}}").splitlines()]
    counts = {k["Type"]: k["TotalCount"] for k in kinds}
    assert counts["Images"] == "2" and counts["Containers"] == "1" and counts["Local Volumes"] == "1"
    verbose = docker.ok("system", "df", "-v")
    assert "acme/web" in verbose and "bolt" not in verbose and "data" in verbose and "web" in verbose
