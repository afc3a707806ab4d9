"""A tenant asks for volume mount paths the engine refuses: a 400 that says why, and nothing is made
(before, the API said 201 and the replica then failed on the host)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidSpec
from engine.volumes.spec import MountSpec, validate_mounts
from hostpanel.deployments.models import App, Release, Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db

BAD_PATHS = {
    "/proc/sys": "/proc belongs to the runtime",
    "/proc": "/proc belongs to the runtime",
    "//proc/sys/kernel": "/proc belongs to the runtime",
    "/sys": "/sys belongs to the runtime",
    "/sys/fs/cgroup": "/sys belongs to the runtime",
    "/dev": "/dev belongs to the runtime",
    "/dev/shm/../": "'..' is not allowed",
    "/": "cannot mount over the container's root",
    "///": "cannot mount over the container's root",
    "data": "use an absolute path",
    "./data": "use an absolute path",
    "/run/secrets": "/run/secrets belongs to the runtime",
    "/etc/hosts": "/etc/hosts belongs to the runtime",
    "/etc/resolv.conf": "/etc/resolv.conf belongs to the runtime",
}


@pytest.fixture
def dev(tenant: Tenant, api: Any) -> Any:
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    client = api(user)
    r = client.post(
        f"/api/v1/tenants/{tenant.slug}/volumes/", {"name": "data", "size_bytes": 2**24}, format="json"
    )
    assert r.status_code == 201, r.json()
    return client


def app_with(path: str) -> dict[str, Any]:
    return {"name": "web", "image": "busybox:latest", "volumes": [{"name": "data", "path": path}]}


@pytest.mark.parametrize("path", BAD_PATHS)
def test_create_refuses_a_path_the_engine_refuses_and_makes_nothing(
    dev: Any, tenant: Tenant, host: Host, path: str, sent_reconciles: list[Any], on_commit: Any
) -> None:
    with pytest.raises(InvalidSpec):  # the host would refuse it: the API must too
        validate_mounts([MountSpec(kind="volume", source="acme.data", target=path)], allow_host_paths=False)
    with on_commit():
        r = dev.post(f"/api/v1/tenants/{tenant.slug}/apps/", app_with(path), format="json")
    assert r.status_code == 400, r.json()
    error = r.json()["error"]
    assert error["code"] == "invalid" and BAD_PATHS[path] in error["message"]
    assert "volumes" in error["details"]
    assert not App.objects.exists() and not Release.objects.exists() and not Replica.objects.exists()
    assert sent_reconciles == []


@pytest.mark.parametrize("path", ["/proc/sys", "/etc/hosts", "relative"])
def test_update_refuses_it_too_and_keeps_the_release(dev: Any, tenant: Tenant, host: Host, path: str) -> None:
    assert (
        dev.post(f"/api/v1/tenants/{tenant.slug}/apps/", app_with("/data"), format="json").status_code == 201
    )
    r = dev.patch(
        f"/api/v1/tenants/{tenant.slug}/apps/web/",
        {"volumes": [{"name": "data", "path": path}]},
        format="json",
    )
    assert r.status_code == 400, r.json()
    assert Release.objects.count() == 1 and Release.objects.get().volumes == [
        {"name": "data", "path": "/data"}
    ]


def test_a_good_path_is_stored_as_the_engine_will_mount_it(dev: Any, tenant: Tenant, host: Host) -> None:
    r = dev.post(f"/api/v1/tenants/{tenant.slug}/apps/", app_with("/var//lib/app/"), format="json")
    assert r.status_code == 201, r.json()
    (volume,) = Release.objects.get().volumes
    assert volume == {"name": "data", "path": "/var/lib/app"}
    validate_mounts(
        [MountSpec(kind="volume", source="acme.data", target=volume["path"])], allow_host_paths=False
    )
