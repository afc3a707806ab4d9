"""docker volume create/ls/inspect/rm/prune against the tenants' door: the panel's volumes service,
names per tenant, the quota, roles, and another tenant's volume as ``No such volume``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.tenants.models import Quota, Role, Tenant
from hostpanel.volumes.models import Volume
from tests.hostpanel.dockerapi.conftest import Client
from tests.hostpanel.dockerapi.test_door_cli import member, raw
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.slow


@pytest.fixture
def tenants(door: Any) -> tuple[Tenant, Tenant]:
    return TenantFactory(slug="acme"), TenantFactory(slug="bolt")


def test_volume_create_ls_inspect_rm(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    docker = docker_as(member(acme), acme)
    assert docker.ok("volume", "create", "--label", "app=web", "-o", "size=8m", "data").strip() == "data"
    assert docker.ok("volume", "create", "cache").strip() == "cache"
    volume = Volume.objects.get(tenant=acme, name="data")
    assert volume.size_bytes == 8 * 1024**2 and volume.labels == {"app": "web"}
    assert AuditLog.objects.filter(action="volume.create", tenant=acme, result="ok").count() == 2
    assert docker.ok("volume", "ls", "-q").split() == ["cache", "data"]
    assert docker.ok("volume", "ls", "-q", "--filter", "label=app=web").split() == ["data"]
    shown = docker.json("volume", "inspect", "data")[0]
    assert shown["Labels"] == {"app": "web"} and shown["Options"] == {"size": str(8 * 1024**2)}
    # creating it again answers the same volume; the same name in another tenant is another volume
    assert docker.ok("volume", "create", "data").strip() == "data"
    other = docker_as(member(bolt), bolt)
    assert other.ok("volume", "create", "data").strip() == "data"
    assert Volume.objects.filter(name="data").count() == 2
    assert other.ok("volume", "ls", "-q").split() == ["data"]

    # host devices and paths are refused, naming the option; a bad name says what a name is
    result = docker("volume", "create", "-o", "type=none", "-o", "device=/etc", "-o", "o=bind", "evil")
    assert result.returncode != 0 and "DriverOpts." in result.stderr and "host device" in result.stderr
    result = docker("volume", "create", "Bad.Name")
    assert result.returncode != 0 and "lowercase letters" in result.stderr, result.stderr
    assert not Volume.objects.filter(name__in=["evil", "Bad.Name"]).exists()

    assert docker.ok("volume", "rm", "cache").strip() == "cache"
    result = docker("volume", "rm", "cache")
    assert result.returncode != 0 and "No such volume: cache" in result.stderr, result.stderr
    assert docker.ok("volume", "ls", "-q").split() == ["data"]
    # docker-py sees the same
    client = docker.docker_py()
    made = client.volumes.create("pyvol", labels={"k": "v"})
    assert made.attrs["Labels"] == {"k": "v"} and client.volumes.get("pyvol").name == "pyvol"
    assert sorted(v.name for v in client.volumes.list()) == ["data", "pyvol"]
    made.remove()
    assert not Volume.objects.filter(name="pyvol").exists()


def test_volume_isolation_roles_and_quota(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    docker = docker_as(member(acme), acme)
    docker.ok("volume", "create", "secret")
    thief = docker_as(member(bolt, Role.OWNER), bolt)
    assert thief.ok("volume", "ls", "-q") == ""
    result = thief("volume", "inspect", "secret")
    assert result.returncode != 0 and "No such volume: secret" in result.stderr, result.stderr
    result = thief("volume", "rm", "secret")
    assert result.returncode != 0 and "No such volume: secret" in result.stderr, result.stderr
    status, answer = raw(thief, "POST", "/v1.44/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D")
    assert status == 200 and answer["VolumesDeleted"] is None
    assert Volume.objects.filter(tenant=acme, name="secret").exists()

    viewer = docker_as(member(acme, Role.VIEWER), acme)
    assert viewer.ok("volume", "ls", "-q").split() == ["secret"]
    for args in (("volume", "create", "more"), ("volume", "rm", "secret")):
        result = viewer(*args)
        assert result.returncode != 0 and "needs the developer role" in result.stderr, result.stderr
    assert list(Volume.objects.filter(tenant=acme).values_list("name", flat=True)) == ["secret"]

    Quota.objects.update_or_create(tenant=acme, defaults={"volumes": 1})
    result = docker("volume", "create", "second")
    assert result.returncode != 0 and "quota" in result.stderr.lower(), result.stderr
    assert not Volume.objects.filter(name="second").exists()

    # prune removes unused volumes only when asked for all (named volumes are not anonymous)
    assert docker.ok("volume", "prune", "-f").count("secret") == 0
    assert "secret" in docker.ok("volume", "prune", "-a", "-f")
    assert not Volume.objects.filter(tenant=acme).exists()
