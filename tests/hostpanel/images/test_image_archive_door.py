"""The internal door an enrolled host fetches an uploaded image from, tried as a hostile host.

``GET /internal/v1/images/archive?reference=...`` serves only the archive of an image a replica
placed on the calling host runs (its tenant's own, or a base image): another host, another tenant's
image, an image not placed there, a forged release, a revoked token, a bad query all get nothing.
The agent checks what it downloads against the document's sha256 and size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from hostpanel.deployments.models import App, Release, Replica
from hostpanel.hosts import enrollment, redis_acl
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db
DOOR = "/internal/v1/images/archive"


@pytest.fixture(autouse=True)
def uploads_in_tmp(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path


def deploy(api: Any, tenant: Tenant, name: str, data: bytes, host: Host) -> App:
    """``tenant`` uploads ``<slug>/<name>:1`` (``data``) and runs it as app ``name``, placed on ``host``."""
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    archive = SimpleUploadedFile("image.tar", data)
    body = {"name": f"{name}:1", "archive": archive}
    r = api(dev).post(f"/api/v1/tenants/{tenant.slug}/images/", body, format="multipart")
    assert r.status_code == 201, r.json()
    image = f"{tenant.slug}/{name}:1"
    r = api(dev).post(f"/api/v1/tenants/{tenant.slug}/apps/", {"name": name, "image": image}, format="json")
    assert r.status_code == 201, r.json()
    app = App.objects.get(tenant=tenant, name=name)
    Replica.objects.filter(app=app).update(host=host)
    return app


@pytest.fixture
def pool(api: Any, tenant: Tenant, host: Host, agents: EnrolledAgents) -> dict[str, APIClient]:
    """acme's acme/app:1 runs on h1, globex's globex/secret:1 on h2; each host's internal API client."""
    h2 = HostFactory(name="h2")
    deploy(api, tenant, "app", b"acme archive", host)
    deploy(api, TenantFactory(slug="globex"), "secret", b"globex archive", h2)
    return {"h1": agents.client(host).panel, "h2": agents.client(h2).panel}


def fetch(client: APIClient, reference: str) -> Any:
    return client.get(DOOR, {"reference": reference})


def content(answer: Any) -> bytes:
    return b"".join(answer.streaming_content)


def test_a_host_gets_only_the_archives_of_its_own_replicas_images(pool: dict[str, APIClient]) -> None:
    h1, h2 = pool["h1"], pool["h2"]
    answer = fetch(h1, "acme/app:1")
    assert answer.status_code == 200 and content(answer) == b"acme archive"
    assert content(fetch(h2, "globex/secret:1")) == b"globex archive"
    nothing = fetch(h1, "acme/nothing:1")
    assert nothing.status_code == 404
    for client, reference in [
        (h1, "globex/secret:1"),  # another tenant's, placed on another host
        (h2, "acme/app:1"),  # a tenant image not placed on this host
        (h1, "acme/app"),  # acme/app:latest: no such image
        (h1, "busybox:latest"),  # a base image without an archive
    ]:
        refused = fetch(client, reference)
        assert refused.status_code == 404, reference
        # the same answer as for a name that does not exist: nothing revealed
        message = refused.json()["error"]["message"]
        assert message == nothing.json()["error"]["message"].replace("acme/nothing:1", reference)

    images = {i.reference: i for i in Image.objects.exclude(archive="")}
    doc = h1.get("/internal/v1/host/desired").json()
    mine = images["acme/app:1"]
    assert doc["archives"] == {"acme/app:1": {"sha256": mine.sha256, "size": mine.size}}
    assert list(h2.get("/internal/v1/host/desired").json()["archives"]) == ["globex/secret:1"]


def test_a_release_forged_onto_another_tenants_image_gets_no_archive(
    pool: dict[str, APIClient], host: Host, agents: EnrolledAgents
) -> None:
    """Should acme's release ever name globex's image (the API refuses it), its host still gets
    neither the archive nor its name in the document, and runs nothing of it."""
    Release.objects.filter(app__tenant__slug="acme").update(image="globex/secret:1")
    assert fetch(pool["h1"], "globex/secret:1").status_code == 404
    assert pool["h1"].get("/internal/v1/host/desired").json()["archives"] == {}
    engine = FakeEngine()
    report = agents.reconcile(engine, host)
    assert report.failed and engine.images.imported == []
    assert "globex/secret:1" in Replica.objects.get(app__tenant__slug="acme").message


def test_a_base_image_with_an_archive_goes_to_the_hosts_running_it(
    pool: dict[str, APIClient], tmp_path: Path
) -> None:
    archive = tmp_path / "tool.tar"
    archive.write_bytes(b"base archive")
    Image.objects.create(tenant=None, reference="library/tool:1", archive=str(archive), size=12)
    Release.objects.filter(app__tenant__slug="acme").update(image="library/tool:1")
    assert content(fetch(pool["h1"], "library/tool:1")) == b"base archive"
    assert fetch(pool["h2"], "library/tool:1").status_code == 404  # no replica of h2 runs it


def test_bad_queries_no_token_and_a_revoked_host_are_refused(
    pool: dict[str, APIClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    h1 = pool["h1"]
    for query, says in [
        ({}, "give the one image reference"),
        ({"reference": ""}, "give the one image reference"),
        ({"reference": ["acme/app:1", "acme/app:1"]}, "give the one image reference"),
        ({"reference": "acme/app:1", "path": "/etc/passwd"}, "unknown field(s): path"),
        ({"reference": "../../etc/passwd"}, "image:"),
        ({"reference": "Acme/APP::1"}, "image:"),
    ]:
        answer = h1.get(DOOR, query)
        assert answer.status_code == 400, query
        assert says in answer.content.decode(), answer.content
    assert APIClient().get(DOOR, {"reference": "acme/app:1"}).status_code == 401
    monkeypatch.setattr(redis_acl, "delete_host_user", lambda name: None)
    enrollment.revoke(None, "h1")
    assert fetch(h1, "acme/app:1").status_code == 401


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        (b"acme archivX", "is not the one uploaded"),  # same size, other bytes
        (b"acme archive and more", "exceeds its 12 bytes"),
        (b"acme", "is not the one uploaded"),  # cut short
    ],
)
def test_the_agent_imports_only_the_archive_that_was_uploaded(
    pool: dict[str, APIClient], host: Host, agents: EnrolledAgents, stored: bytes, says: str
) -> None:
    """An archive changed on the panel's disk (or in transit) is refused before the engine sees it;
    the download is removed; the replica fails saying why."""
    path = Path(Image.objects.get(reference="acme/app:1").archive)
    path.write_bytes(stored)
    engine = FakeEngine()
    assert agents.reconcile(engine, host).failed and engine.images.imported == []
    assert says in Replica.objects.get(app__tenant__slug="acme").message
    assert list((agents.state_dir(host) / "scratch").iterdir()) == []
    path.write_bytes(b"acme archive")
    assert agents.reconcile(engine, host).failed == []
    assert engine.images.contents["acme/app:1"] == b"acme archive"
