"""Who may read and write which repository: tenants, roles, library/, host agents; the panel link."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.errors import InvalidRequest
from hostpanel.images.models import Image
from hostpanel.images.services import check_available
from hostpanel.registry.models import BlobLink, Repository, Upload
from hostpanel.registry.services import agent_pull_token, pull_source
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import HostFactory, MembershipFactory, UserFactory
from tests.hostpanel.registry.conftest import OCI_MANIFEST, Registry, basic, digest_of, error_code

pytestmark = pytest.mark.django_db
Reg = Callable[..., Registry]


@pytest.fixture
def pushed(reg: Reg, acme: Tenant) -> dict[str, Any]:
    """acme/app:1 with one layer, pushed by an acme developer."""
    client = reg(acme)
    digest = client.push_image("acme/app", "1", [b"acme secret layer"])
    return {"client": client, "manifest": digest, "layer": digest_of(b"acme secret layer")}


def test_another_tenant_cannot_read_anything(reg: Reg, globex: Tenant, pushed: dict[str, Any]) -> None:
    outsider = reg(globex, Role.OWNER)
    for path in (
        "/v2/acme/app/manifests/1",
        f"/v2/acme/app/manifests/{pushed['manifest']}",
        f"/v2/acme/app/blobs/{pushed['layer']}",
        "/v2/acme/app/tags/list",
    ):
        r = outsider.request("GET", path)
        assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN", path
        assert b"secret" not in r.content
    # the same answer as for a repository that does not exist: nothing is revealed
    missing = outsider.request("GET", "/v2/acme/nothing/tags/list")
    assert missing.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert outsider.request("HEAD", "/v2/acme/app/manifests/1").status_code == 404


def test_another_tenant_cannot_push_or_delete(
    reg: Reg, acme: Tenant, globex: Tenant, pushed: dict[str, Any]
) -> None:
    outsider = reg(globex, Role.OWNER)
    data = b"intruder"
    r = outsider.request("POST", f"/v2/acme/app/blobs/uploads/?digest={digest_of(data)}", data)
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    assert outsider.request("POST", "/v2/acme/new/blobs/uploads/").status_code == 404
    body = pushed["client"].request("GET", "/v2/acme/app/manifests/1").content
    assert (
        outsider.request("PUT", "/v2/acme/app/manifests/2", body, content_type=OCI_MANIFEST).status_code
        == 404
    )
    assert outsider.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}").status_code == 404
    assert outsider.request("DELETE", f"/v2/acme/app/blobs/{pushed['layer']}").status_code == 404
    assert not Upload.objects.exists() and not Repository.objects.filter(name="acme/new").exists()
    assert pushed["client"].request("GET", "/v2/acme/app/tags/list").json()["tags"] == ["1"]
    denied = AuditLog.objects.filter(result="denied", action__startswith="registry.")
    assert denied.count() == 5 and {e.actor_name for e in denied} == {denied[0].actor_name}


def test_a_token_for_one_tenant_does_not_reach_the_users_other_tenant(
    reg: Reg, acme: Tenant, globex: Tenant, token_for: Any, pushed: dict[str, Any]
) -> None:
    user = MembershipFactory(tenant=globex, role=Role.OWNER).user
    MembershipFactory(tenant=acme, role=Role.OWNER, user=user)
    globex_token = reg(authorization=basic(user.username, token_for(globex, user=user)))
    assert globex_token.request("GET", "/v2/acme/app/tags/list").status_code == 404
    acme_token = reg(authorization=basic(user.username, token_for(acme, user=user)))
    assert acme_token.request("GET", "/v2/acme/app/tags/list").status_code == 200


def test_mount_from_another_tenant_falls_back_to_an_upload_without_linking(
    reg: Reg, globex: Tenant, pushed: dict[str, Any]
) -> None:
    outsider = reg(globex)
    layer = pushed["layer"]
    r = outsider.request("POST", f"/v2/globex/steal/blobs/uploads/?mount={layer}&from=acme/app")
    assert r.status_code == 202 and "/v2/globex/steal/blobs/uploads/" in r["Location"]
    assert not BlobLink.objects.filter(repository__name="globex/steal").exists()
    assert outsider.request("GET", f"/v2/globex/steal/blobs/{layer}").status_code == 404


def test_a_viewer_pulls_but_may_not_push_or_delete(reg: Reg, acme: Tenant, pushed: dict[str, Any]) -> None:
    viewer = reg(acme, Role.VIEWER)
    assert viewer.request("GET", "/v2/acme/app/manifests/1").status_code == 200
    assert viewer.request("GET", f"/v2/acme/app/blobs/{pushed['layer']}").status_code == 200
    r = viewer.request("POST", "/v2/acme/app/blobs/uploads/")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    r = viewer.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}")
    assert r.status_code == 403 and error_code(r) == "DENIED"


def test_admins_publish_library_images_every_user_pulls(reg: Reg, acme: Tenant, globex: Tenant) -> None:
    UserFactory(username="boss", password="s3cret-pass", is_staff=True)
    admin = reg(authorization=basic("boss", "s3cret-pass"))
    admin.push_image("library/base", "1")
    image = Image.objects.get(reference="library/base:1")
    assert image.tenant is None  # a base image: every tenant may run it
    assert check_available(globex, "library/base:1") == "library/base:1"
    for tenant in (acme, globex):
        client = reg(tenant, Role.VIEWER)
        assert client.request("GET", "/v2/library/base/manifests/1").status_code == 200
    dev = reg(acme, Role.OWNER)
    r = dev.request("POST", "/v2/library/base/blobs/uploads/")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    mounted = dev.request(
        "POST", f"/v2/acme/app/blobs/uploads/?mount={digest_of(b'layer of library/base:1')}&from=library/base"
    )
    assert mounted.status_code == 201  # everyone may build on the base images


def test_a_staff_users_api_token_carries_no_admin_powers(reg: Reg, acme: Tenant, token_for: Any) -> None:
    staff = UserFactory(username="staffer", is_staff=True)
    client = reg(authorization=basic("staffer", token_for(acme, Role.OWNER, user=staff)))
    assert client.request("POST", "/v2/library/base/blobs/uploads/").status_code == 403


def test_a_pushed_tag_is_the_tenants_image_and_agents_pull_it(
    reg: Reg, acme: Tenant, globex: Tenant, pushed: dict[str, Any], settings: Any
) -> None:
    image = Image.objects.get(reference="acme/app:1")
    assert image.tenant == acme and image.archive == ""
    assert check_available(acme, "acme/app:1") == "acme/app:1"
    with pytest.raises(InvalidRequest, match="not available"):
        check_available(globex, "acme/app:1")
    settings.HOSTPANEL_REGISTRY_URL = "http://panel.example:8000"
    source = pull_source("acme/app:1")
    assert source is not None and source.digest == pushed["manifest"]
    assert source.reference == f"panel.example:8000/acme/app@{pushed['manifest']}"
    assert pull_source("acme/app:2") is None
    host = HostFactory(name="h1")
    agent = reg(authorization=f"Bearer {agent_pull_token(host)}")
    assert agent.request("GET", "/v2/acme/app/manifests/1").status_code == 200
    assert agent.request("GET", f"/v2/acme/app/blobs/{pushed['layer']}").status_code == 200
    as_basic = reg(authorization=basic("agent", agent_pull_token("h1")))
    assert as_basic.request("GET", "/v2/acme/app/manifests/1").status_code == 200
    assert agent.request("POST", "/v2/acme/app/blobs/uploads/").status_code == 401  # pull only
    host.delete()
    assert agent.request("GET", "/v2/acme/app/manifests/1").status_code == 401


def test_deleting_the_tag_forgets_the_panel_image(reg: Reg, acme: Tenant, pushed: dict[str, Any]) -> None:
    assert pushed["client"].request("DELETE", "/v2/acme/app/manifests/1").status_code == 202
    assert not Image.objects.filter(reference="acme/app:1").exists()


def test_a_push_never_takes_over_another_owners_image_name(reg: Reg, acme: Tenant) -> None:
    UserFactory(username="boss", password="s3cret-pass", is_staff=True)
    Image.objects.create(reference="acme/app:9", tenant=None)  # odd, but must stay the admins'
    reg(acme).push_image("acme/app", "9")
    assert Image.objects.get(reference="acme/app:9").tenant is None
