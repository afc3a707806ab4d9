"""A release's process fields (entrypoint, user, working_dir, stop signal and grace, init, labels,
tmpfs, read-only volumes): accepted through the apps API, refused with the field named, carried into
the engine's ContainerSpec, and part of the container's shape only when set."""

from __future__ import annotations

from typing import Any

import pytest

from hostpanel.deployments import desired
from hostpanel.deployments.models import App, Release, Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import MembershipFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = pytest.mark.django_db

WEB = {"name": "web", "image": "busybox:latest", "command": ["sleep", "3600"]}
PROCESS = {
    "entrypoint": ["/bin/sh", "-c"],
    "user": "1000:1000",
    "working_dir": "/srv/app",
    "stop_signal": "int",
    "stop_grace_seconds": 3,
    "init": True,
    "labels": {"com.example.role": "web"},
    "tmpfs": [{"path": "/scratch", "size_bytes": 1024**2}],
}


@pytest.fixture
def dev(tenant: Tenant) -> Any:
    return MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user


def url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/apps/{suffix}"


def test_process_fields_reach_the_engine_spec(
    api: Any, dev: Any, tenant: Tenant, host: Host, agents: EnrolledAgents
) -> None:
    Volume.objects.create(tenant=tenant, name="data", size_bytes=1024**2)
    body = WEB | PROCESS | {"volumes": [{"name": "data", "path": "/data", "read_only": True}]}
    r = api(dev).post(url(tenant), body, format="json")
    assert r.status_code == 201, r.json()
    release = r.json()["release"]
    assert release["stop_signal"] == "SIGINT" and release["labels"] == {"com.example.role": "web"}
    (entry,) = agents.client(host).desired()["replicas"]  # the host's document, as its agent gets it
    assert entry["replica"] == Replica.objects.get().pk
    spec = desired.container_spec(entry, {})
    assert spec.entrypoint == ("/bin/sh", "-c") and spec.user == "1000:1000"
    assert spec.workdir == "/srv/app" and spec.init is True
    assert spec.stop_signal == "SIGINT" and spec.stop_timeout == 3
    assert spec.labels["com.example.role"] == "web"
    assert spec.labels[desired.LABEL_TENANT] == tenant.slug
    kinds = {(m.kind, m.target, m.read_only, m.size) for m in spec.mounts}
    assert kinds == {("volume", "/data", True, 0), ("tmpfs", "/scratch", False, 1024**2)}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"labels": {"org.hostpanel.app": "1"}}, "labels"),
        ({"labels": {"ORG.HOSTPANEL.tenant": "x"}}, "labels"),
        ({"user": "root; rm"}, "user"),
        ({"working_dir": "relative"}, "working_dir"),
        ({"working_dir": "/a/../etc"}, "working_dir"),
        ({"stop_signal": "SIGNOPE"}, "stop_signal"),
        ({"stop_grace_seconds": 99999}, "stop_grace_seconds"),
        ({"tmpfs": [{"path": "/proc/x"}]}, "tmpfs"),
        ({"tmpfs": [{"path": "/t", "size_bytes": 10 * 1024**3}]}, "tmpfs"),
        ({"tmpfs": [{"path": "/t", "mode": 777}]}, "tmpfs"),
        ({"entrypoint": "sh -c"}, "entrypoint"),
    ],
)
def test_bad_process_field_is_a_400_naming_it_and_changes_nothing(
    api: Any, dev: Any, tenant: Tenant, host: Host, change: dict[str, Any], field: str
) -> None:
    r = api(dev).post(url(tenant), WEB | change, format="json")
    assert r.status_code == 400, r.json()
    assert field in str(r.json())
    assert not App.objects.exists() and not Release.objects.exists()


def test_unset_process_fields_keep_the_shape_of_older_releases(
    api: Any, dev: Any, tenant: Tenant, host: Host
) -> None:
    assert api(dev).post(url(tenant), WEB, format="json").status_code == 201
    shape = Release.objects.get().container_shape()
    assert not set(shape) & {"entrypoint", "user", "labels", "tmpfs", "init"}
    assert api(dev).patch(url(tenant, "web/"), {"init": True}, format="json").status_code == 200
    newest = Release.objects.order_by("-version").first()
    assert newest is not None and newest.container_shape()["init"] is True
