"""Deletes through basic auth and the Docker token flow, and every way a delete must be refused.

The conformance suite's client asks ``/v2/token`` for exactly the scope a
``DELETE``'s challenge names (``repository:<name>:delete``); that token alone
must delete manifests, tags and blobs. Only roles that may delete ever get the
scope; a token without it, another tenant's, a viewer's or a host agent's
deletes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostpanel.audit.models import AuditLog
from hostpanel.registry.auth import DELETE, LEAST_ROLE, PULL, PUSH, Operation, principal_from_bearer
from hostpanel.registry.gc import collect_garbage
from hostpanel.registry.models import BlobLink, Manifest, Tag
from hostpanel.registry.services import agent_pull_token
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import HostFactory
from tests.hostpanel.registry.conftest import (
    DELETED,
    OCI_MANIFEST,
    BasicAuth,
    Registry,
    TokenFlow,
    basic,
    delete_workflow,
    digest_of,
    django_send,
    error_code,
)

pytestmark = pytest.mark.django_db
Reg = Callable[..., Registry]


def _stored(root: Path, digest: str) -> bool:
    return (root / "blobs" / "sha256" / digest.split(":", 1)[1]).exists()


def _token(reg: Reg, secret: str, scope: str) -> tuple[Registry, dict[str, list[str]]]:
    """A bearer client for ``scope`` (asked with the API token ``secret``) and what the token grants."""
    r = reg(authorization=basic("x", secret)).request("GET", f"/v2/token?scope={scope}")
    assert r.status_code == 200, r.content
    token = r.json()["token"]
    principal = principal_from_bearer(token)
    assert principal.scopes is not None
    return reg(authorization=f"Bearer {token}"), {k: sorted(v) for k, v in principal.scopes.items()}


@pytest.fixture
def pushed(reg: Reg, acme: Tenant) -> dict[str, Any]:
    """acme/app:1 with one layer, pushed by an acme developer."""
    client = reg(acme)
    digest = client.push_image("acme/app", "1", [b"acme layer"])
    return {"client": client, "manifest": digest, "layer": digest_of(b"acme layer")}


# ---- the one table ------------------------------------------------------------------------
def test_each_operation_requires_one_action_and_deletes_need_delete_only() -> None:
    assert {op: op.action for op in Operation if op.action == DELETE} == {
        Operation.DELETE_MANIFEST: DELETE,
        Operation.DELETE_BLOB: DELETE,
    }
    assert Operation.PUSH_MANIFEST.action == Operation.UPLOAD_BLOB.action == PUSH
    assert Operation.READ_MANIFEST.action == Operation.READ_BLOB.action == Operation.LIST_TAGS.action == PULL
    assert LEAST_ROLE[DELETE] == Role.DEVELOPER and LEAST_ROLE[PULL] == Role.VIEWER


# ---- the conformance workflow -------------------------------------------------------------
@pytest.mark.parametrize("flow", ["token", "basic"])
def test_the_conformance_delete_workflow_passes(
    acme: Tenant, token_for: Any, registry_root: Path, flow: str
) -> None:
    secret = token_for(acme, Role.DEVELOPER)
    client = (TokenFlow if flow == "token" else BasicAuth)(django_send(), "anyone", secret)
    steps = delete_workflow(client, "acme/conformance")
    assert {k: steps[k] for k in DELETED} == DELETED
    assert steps["tags after"] < steps["tags before"]
    if isinstance(client, TokenFlow):
        # the suite's client asked for exactly what each challenge named, and a delete needed only delete
        assert "repository:acme/conformance:delete" in client.scopes_asked
    assert not Manifest.objects.filter(repository__name="acme/conformance").exists()
    assert not BlobLink.objects.filter(repository__name="acme/conformance").exists()
    ok = AuditLog.objects.filter(result="ok")
    assert ok.filter(action="registry.manifest.delete").count() == 2  # the tag, then the manifest
    assert ok.filter(action="registry.blob.delete").count() == 2
    # garbage collection then frees exactly the bytes nothing refers to any more
    report = collect_garbage(grace_seconds=0)
    assert sorted(report.deleted_blobs) == sorted(steps["digests"])
    assert not any(_stored(registry_root, d) for d in steps["digests"])


def test_a_token_for_delete_alone_deletes_by_tag_digest_and_blob_but_reads_nothing(
    reg: Reg, acme: Tenant, token_for: Any, pushed: dict[str, Any]
) -> None:
    client = pushed["client"]
    body = client.request("GET", "/v2/acme/app/manifests/1").content
    client.request("PUT", "/v2/acme/app/manifests/2", body, content_type=OCI_MANIFEST)
    bearer, grants = _token(reg, token_for(acme, Role.OWNER), "repository:acme/app:delete")
    assert grants == {"acme/app": ["delete"]}

    read = bearer.request("GET", "/v2/acme/app/manifests/1")
    assert read.status_code == 401 and error_code(read) == "UNAUTHORIZED"
    assert 'scope="repository:acme/app:pull"' in read["WWW-Authenticate"]

    assert bearer.request("DELETE", "/v2/acme/app/manifests/2").status_code == 202  # a tag
    assert list(Tag.objects.values_list("name", flat=True)) == ["1"]
    assert bearer.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}").status_code == 202
    assert not Manifest.objects.exists() and not Tag.objects.exists()
    assert bearer.request("DELETE", f"/v2/acme/app/blobs/{pushed['layer']}").status_code == 202
    assert not BlobLink.objects.filter(digest=pushed["layer"]).exists()
    again = bearer.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}")
    assert again.status_code == 404 and error_code(again) == "MANIFEST_UNKNOWN"
    gone = bearer.request("DELETE", f"/v2/acme/app/blobs/{pushed['layer']}")
    assert gone.status_code == 404 and error_code(gone) == "BLOB_UNKNOWN"


def test_a_blob_a_manifest_still_needs_stays_until_the_manifest_goes(
    reg: Reg, acme: Tenant, registry_root: Path, pushed: dict[str, Any]
) -> None:
    client = pushed["client"]
    r = client.request("DELETE", f"/v2/acme/app/blobs/{pushed['layer']}")
    assert r.status_code == 405 and "delete that manifest first" in r.json()["errors"][0]["message"]
    assert collect_garbage(grace_seconds=0).deleted_blobs == []
    assert _stored(registry_root, pushed["layer"])
    assert client.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}").status_code == 202
    assert client.request("DELETE", f"/v2/acme/app/blobs/{pushed['layer']}").status_code == 202
    assert pushed["layer"] in collect_garbage(grace_seconds=0).deleted_blobs


@pytest.mark.parametrize("flow", ["token", "basic"])
def test_the_suites_default_teardown_deletes_blobs_before_their_manifest(
    acme: Tenant, token_for: Any, registry_root: Path, flow: str
) -> None:
    """OCI_DELETE_MANIFEST_BEFORE_BLOBS=0: each teardown step must answer 2xx or 405, and nothing breaks."""
    client = (TokenFlow if flow == "token" else BasicAuth)(django_send(), "anyone", token_for(acme))
    reg_client = Registry(client.basic)
    manifest = reg_client.push_image("acme/teardown", "1", [b"teardown layer"])
    config, layer = digest_of(b'{"architecture":"amd64"}'), digest_of(b"teardown layer")
    for blob in (config, layer):
        refused = client.request("DELETE", f"/v2/acme/teardown/blobs/{blob}")
        assert refused.status == 405 and refused.code == "UNSUPPORTED", refused.body
    # the image is still whole: its manifest and every blob it needs still answer
    assert client.request("GET", "/v2/acme/teardown/manifests/1").status == 200
    assert all(client.request("GET", f"/v2/acme/teardown/blobs/{b}").status == 200 for b in (config, layer))
    assert client.request("DELETE", f"/v2/acme/teardown/manifests/{manifest}").status == 202
    # the links the refused deletes left go with garbage collection, and the bytes with them
    report = collect_garbage(grace_seconds=0)
    assert report.dropped_links == 2
    assert sorted(report.deleted_blobs) == sorted([manifest, config, layer])
    assert client.request("GET", f"/v2/acme/teardown/blobs/{layer}").status == 404


def test_a_layer_another_repository_still_uses_survives_a_delete_and_gc(
    reg: Reg, acme: Tenant, registry_root: Path
) -> None:
    client = reg(acme)
    shared = [b"shared layer"]
    client.push_image("acme/one", "1", shared)
    kept = client.push_image("acme/two", "1", shared)
    for name in ("acme/one",):
        digest = Manifest.objects.get(repository__name=name).digest
        assert client.request("DELETE", f"/v2/{name}/manifests/{digest}").status_code == 202
        assert client.request("DELETE", f"/v2/{name}/blobs/{digest_of(b'shared layer')}").status_code == 202
    collect_garbage(grace_seconds=0)
    assert _stored(registry_root, digest_of(b"shared layer")) and _stored(registry_root, kept)
    assert client.request("GET", f"/v2/acme/two/blobs/{digest_of(b'shared layer')}").status_code == 200


# ---- refusals -----------------------------------------------------------------------------
def _intact(pushed: dict[str, Any]) -> None:
    client = pushed["client"]
    assert client.request("GET", f"/v2/acme/app/manifests/{pushed['manifest']}").status_code == 200
    assert client.request("GET", f"/v2/acme/app/blobs/{pushed['layer']}").status_code == 200
    assert client.request("GET", "/v2/acme/app/tags/list").json()["tags"] == ["1"]


def test_a_pull_only_token_cannot_delete(
    reg: Reg, acme: Tenant, token_for: Any, pushed: dict[str, Any]
) -> None:
    bearer, grants = _token(reg, token_for(acme, Role.OWNER), "repository:acme/app:pull")
    assert grants == {"acme/app": ["pull"]}
    for path in (f"/v2/acme/app/manifests/{pushed['manifest']}", "/v2/acme/app/manifests/1",
                 f"/v2/acme/app/blobs/{pushed['layer']}"):  # fmt: skip
        r = bearer.request("DELETE", path)
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", path
        assert r["WWW-Authenticate"].endswith('scope="repository:acme/app:delete",error="insufficient_scope"')
    # a delete token for one repository deletes nothing in another
    other, _ = _token(reg, token_for(acme, Role.OWNER), "repository:acme/other:delete")
    assert other.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}").status_code == 401
    _intact(pushed)


def test_a_viewer_never_gets_delete_and_cannot_delete(
    reg: Reg, acme: Tenant, token_for: Any, pushed: dict[str, Any]
) -> None:
    secret = token_for(acme, Role.VIEWER)
    for scope in (
        "repository:acme/app:delete",
        "repository:acme/app:pull,push,delete",
        "repository:acme/app:*",
    ):
        bearer, grants = _token(reg, secret, scope)
        assert "delete" not in grants["acme/app"], scope
        r = bearer.request("DELETE", f"/v2/acme/app/manifests/{pushed['manifest']}")
        assert r.status_code == 401 and "only developers and owners" in r.json()["errors"][0]["message"]
    flow = TokenFlow(django_send(), "viewer", secret)
    for path in (f"/v2/acme/app/manifests/{pushed['manifest']}", f"/v2/acme/app/blobs/{pushed['layer']}"):
        assert flow.request("DELETE", path).status == 401
    assert flow.scopes_asked == ["repository:acme/app:delete"] * 2
    plain = BasicAuth(django_send(), "viewer", secret)
    for path in (f"/v2/acme/app/manifests/{pushed['manifest']}", "/v2/acme/app/manifests/1",
                 f"/v2/acme/app/blobs/{pushed['layer']}"):  # fmt: skip
        r = plain.request("DELETE", path)
        assert r.status == 403 and r.code == "DENIED", path
    _intact(pushed)
    # every refused delete is in the audit log (the token flow's second one twice: old token, new token)
    assert AuditLog.objects.filter(result="denied", action__startswith="registry.").count() == 3 + 3 + 3


def test_another_tenants_token_cannot_delete_and_learns_nothing(
    reg: Reg, acme: Tenant, globex: Tenant, token_for: Any, pushed: dict[str, Any]
) -> None:
    secret = token_for(globex, Role.OWNER)
    _, grants = _token(reg, secret, "repository:acme/app:pull,push,delete")
    assert grants == {"acme/app": []}
    flow = TokenFlow(django_send(), "intruder", secret)
    plain = BasicAuth(django_send(), "intruder", secret)
    answers = {}
    for repo in ("acme/app", "acme/does-not-exist"):
        for path in (f"/v2/{repo}/manifests/{pushed['manifest']}", f"/v2/{repo}/manifests/1",
                     f"/v2/{repo}/blobs/{pushed['layer']}"):  # fmt: skip
            via_flow, via_basic = flow.request("DELETE", path), plain.request("DELETE", path)
            assert via_flow.status == 401 and via_flow.code == "UNAUTHORIZED", path
            assert via_basic.status == 404 and via_basic.code == "NAME_UNKNOWN", path
            bodies = (via_flow.body, via_basic.body, via_flow.headers["www-authenticate"].encode())
            answers.setdefault(path.split("/", 4)[-1], set()).add(
                tuple(b.replace(repo.encode(), b"R") for b in bodies)
            )
    # an existing repository answers exactly like one that does not exist
    assert all(len(bodies) == 1 for bodies in answers.values())
    _intact(pushed)


def test_a_host_agents_token_pulls_but_cannot_delete(reg: Reg, acme: Tenant, pushed: dict[str, Any]) -> None:
    agent = reg(authorization=f"Bearer {agent_pull_token(HostFactory(name='h1'))}")
    assert agent.request("GET", f"/v2/acme/app/manifests/{pushed['manifest']}").status_code == 200
    for path in (f"/v2/acme/app/manifests/{pushed['manifest']}", f"/v2/acme/app/blobs/{pushed['layer']}"):
        assert agent.request("DELETE", path).status_code == 401
    _intact(pushed)


def test_a_delete_with_a_forged_or_missing_credential_is_refused(
    acme: Tenant, pushed: dict[str, Any]
) -> None:
    send = django_send()
    path = f"/v2/acme/app/manifests/{pushed['manifest']}"
    anonymous = send("DELETE", path, b"", "", {})
    assert anonymous.status == 401
    assert 'scope="repository:acme/app:delete"' in anonymous.headers["www-authenticate"]
    forged = send("DELETE", path, b"", "", {"Authorization": "Bearer hpreg.eyJhY2Nlc3MiOnt9fQ:forged:sig"})
    assert forged.status == 401
    assert TokenFlow(send, "anyone", "hp_not-a-token").request("DELETE", path).status == 401
    _intact(pushed)
