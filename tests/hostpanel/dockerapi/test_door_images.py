"""The stock docker CLI's image verbs against the tenants' door: images, image inspect, tag, rmi and
pull from the panel's registry, each through the panel's images service, scoped to the tenant."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from engine.registry import Credentials
from hostpanel.audit.models import AuditLog
from hostpanel.builds.models import Build
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.dockerapi.conftest import Client
from tests.hostpanel.dockerapi.test_door_cli import member, raw
from tests.hostpanel.factories import HostFactory, TenantFactory
from tests.hostpanel.registry_client.conftest import (
    PanelRegistry,
    client_engine,
    panel_registry,
    tenant_token,
)

__all__ = ["client_engine", "panel_registry", "tenant_token"]

pytestmark = pytest.mark.slow


def own_image(tenant: Tenant, name: str, tmp_path: Path, content: bytes = b"image") -> Image:
    """A tenant's image as a build or an upload leaves it: a stored archive (its content is not read)."""
    archive = tmp_path / f"{hashlib.sha256(content).hexdigest()}.tar"
    archive.write_bytes(content)
    return Image.objects.create(
        reference=f"{tenant.slug}/{name}",
        tenant=tenant,
        archive=str(archive),
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


@pytest.fixture
def tenants(door: Any, tmp_path: Path) -> tuple[Tenant, Tenant]:
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    HostFactory(name="h1")
    acme, bolt = TenantFactory(slug="acme"), TenantFactory(slug="bolt")
    own_image(acme, "web:latest", tmp_path, b"acme web")
    own_image(bolt, "secret:1", tmp_path, b"bolt secret")
    return acme, bolt


def refs(client: Client) -> list[str]:
    return sorted(client.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split())


def test_images_and_inspect_show_own_and_base_images_only(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    docker = docker_as(member(acme, Role.VIEWER), acme)
    assert refs(docker) == ["acme/web:latest", "busybox:latest"]
    web = Image.objects.get(reference="acme/web:latest")
    inspected = docker.json("image", "inspect", "web")  # the tenant's short name finds its own image
    assert inspected[0]["Id"] == f"sha256:{web.sha256}" and inspected[0]["RepoTags"] == ["acme/web:latest"]
    assert docker.json("image", "inspect", web.sha256[:12])[0]["RepoTags"] == ["acme/web:latest"]
    assert docker.ok("images", "-q", "acme/web").strip() == web.sha256[:12]
    # bolt's image is not there for acme, by name, by full name or by id
    secret = Image.objects.get(reference="bolt/secret:1")
    for name in ("bolt/secret:1", "secret:1", secret.sha256[:12], f"sha256:{secret.sha256}"):
        result = docker("image", "inspect", name)
        assert result.returncode != 0 and f"No such image: {name}" in result.stderr, result.stderr
    assert "bolt" not in docker.ok("images", "-a")
    developer = docker_as(member(acme), acme)
    result = developer("run", "--rm", "bolt/secret:1")  # nor can a container of acme's run it
    assert result.returncode != 0 and "Unable to find image 'bolt/secret:1'" in result.stderr, result.stderr
    assert "neither one of your images nor a base image" in result.stderr
    # docker-py sees the same
    client = docker.docker_py()
    assert sorted(t for i in client.images.list() for t in i.tags) == ["acme/web:latest", "busybox:latest"]
    assert client.images.get("web").id == f"sha256:{web.sha256}"
    assert docker_as(member(bolt), bolt).ok("images", "--format", "{{.Repository}}").split() == [
        "bolt/secret",
        "busybox",
    ]


def test_tag_and_rmi_through_the_images_service(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = tenants
    docker = docker_as(member(acme), acme)
    docker.ok("tag", "web", "web:v2")
    docker.ok("tag", "acme/web", "acme/site")
    assert refs(docker) == ["acme/site:latest", "acme/web:latest", "acme/web:v2", "busybox:latest"]
    tagged = Image.objects.get(reference="acme/web:v2")
    assert tagged.tenant == acme and tagged.archive == Image.objects.get(reference="acme/web:latest").archive
    ids = docker.ok("images", "--format", "{{.ID}}", "acme/*").split()
    assert len(set(ids)) == 1  # one image, three names
    assert AuditLog.objects.filter(action="image.tag", tenant=acme, result="ok").count() == 2

    # names outside the tenant's namespace, base images and other tenants' images are refused
    result = docker("tag", "web", "bolt/mine")
    assert result.returncode != 0 and "outside your namespace" in result.stderr, result.stderr
    result = docker("tag", "busybox", "mybox")
    assert result.returncode != 0 and "operator's base images" in result.stderr, result.stderr
    result = docker("tag", "bolt/secret:1", "stolen")
    assert result.returncode != 0 and "No such image: bolt/secret:1" in result.stderr, result.stderr
    assert not Image.objects.filter(reference__in=["bolt/mine:latest", "acme/mybox:latest"]).exists()
    assert not Image.objects.filter(reference="acme/stolen:latest").exists()

    # a viewer reads but neither tags nor removes
    viewer = docker_as(member(acme, Role.VIEWER), acme)
    result = viewer("tag", "web", "web:v3")
    assert result.returncode != 0 and "needs the developer role" in result.stderr, result.stderr
    result = viewer("rmi", "web:v2")
    assert result.returncode != 0 and "needs the developer role" in result.stderr, result.stderr
    assert Image.objects.filter(reference="acme/web:v2").exists()

    # rmi of one name untags it; the archive stays while another name uses it
    assert "Untagged: acme/web:v2" in docker.ok("rmi", "web:v2")
    assert Path(tagged.archive).exists()
    result = docker("rmi", "busybox")
    assert result.returncode != 0 and "busybox:latest is one of the operator's base images" in result.stderr
    assert Image.objects.filter(reference="busybox:latest").exists()
    bolt_docker = docker_as(member(bolt), bolt)
    result = bolt_docker("rmi", "acme/web")
    assert result.returncode != 0 and "No such image: acme/web" in result.stderr, result.stderr
    # by id with two names: refused unless forced, then every name goes with the archive
    image_id = Image.objects.get(reference="acme/web:latest").sha256
    result = docker("rmi", image_id[:12])
    assert result.returncode != 0 and "must be forced" in result.stderr, result.stderr
    out = docker.ok("rmi", "-f", image_id[:12])
    assert "Untagged: acme/web:latest" in out and f"Deleted: sha256:{image_id}" in out
    assert refs(docker) == ["busybox:latest"] and not Path(tagged.archive).exists()
    assert refs(bolt_docker) == ["bolt/secret:1", "busybox:latest"]


def test_pull_answers_only_for_the_panel_registry_and_available_images(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = tenants
    docker = docker_as(member(acme), acme)
    assert "Image is up to date for busybox" in docker.ok("pull", "busybox")
    assert "Image is up to date for web" in docker.ok("pull", "web")
    for elsewhere in ("registry.example.com/tools/x:1", "alpine:3"):
        result = docker("pull", elsewhere)
        assert result.returncode != 0 and "push the image to the panel's registry" in result.stderr
    result = docker("pull", "bolt/secret:1")
    assert result.returncode != 0 and "neither one of your images nor a base image" in result.stderr
    status, answer = raw(docker, "POST", "/v1.44/images/create?fromSrc=-")
    assert status == 400 and "docker import" in answer["message"]


def test_pull_of_a_pushed_image_from_the_panel_registry(
    door: Any,
    panel_registry: PanelRegistry,
    client_engine: Engine,
    tenant_token: Callable[..., str],
    docker_as: Callable[..., Client],
) -> None:
    HostFactory(name="h1")
    acme_token = tenant_token("acme")
    tenant_token("bolt")
    acme, bolt = Tenant.objects.get(slug="acme"), Tenant.objects.get(slug="bolt")
    host = panel_registry.host
    client_engine.push(
        "busybox", f"{host}/acme/box:1", insecure=True, credentials=Credentials("a", acme_token)
    )
    Image.objects.filter(reference="acme/box:1").delete()  # as if pushed before pushes were published
    docker = docker_as(member(acme), acme)
    digest = client_engine.image("busybox").digest
    out = docker.ok("pull", f"{host}/acme/box:1")
    assert f"Digest: {digest}" in out and f"Downloaded newer image for {host}/acme/box:1" in out
    assert Image.objects.get(reference="acme/box:1").tenant == acme
    assert "acme/box:1" in refs(docker)
    assert "Image is up to date" in docker.ok("pull", f"{host}/acme/box:1")
    assert docker.json("image", "inspect", f"{host}/acme/box:1")[0]["RepoTags"] == ["acme/box:1"]
    # another tenant's repository in the panel registry is as absent as one that does not exist
    thief = docker_as(member(bolt), bolt)
    for name in (f"{host}/acme/box:1", f"{host}/acme/nothing:1"):
        result = thief("pull", name)
        assert result.returncode != 0 and "pull access denied" in result.stderr, result.stderr
    assert "acme/box" not in thief.ok("images")


def test_build_refusals_before_anything_is_queued(
    tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client], tmp_path: Path
) -> None:

    acme, _ = tenants
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    docker = docker_as(member(acme), acme)
    viewer = docker_as(member(acme, Role.VIEWER), acme)
    cases = [
        (viewer, ["-t", "x"], "needs the developer role"),
        (docker, [], "give the image a name"),
        (docker, ["-t", "bolt/x"], "outside your namespace"),
        (docker, ["-t", "x", "--network", "host"], "networkmode='host' is not allowed"),
        (docker, ["-t", "x", "--label", "a=b"], "image labels (--label) are not supported"),
    ]
    for client, args, said in cases:
        result = client("build", *args, str(project))
        assert result.returncode != 0 and said in result.stderr, (args, result.stderr)
    assert not Build.objects.exists()
    assert AuditLog.objects.filter(action="build.start", result="denied", tenant=acme).count() == 1
