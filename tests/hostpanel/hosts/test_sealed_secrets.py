"""Secrets sealed to one host's key: the construction, the internal API door, the enrolled agent.

Tries to break it: another host's token, another host's key, altered boxes, a box moved to
another replica or name. The whole path with a running enrolled agent and a real container is
tests/hostpanel/e2e/test_e2e_enrollment.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from rest_framework.test import APIClient

from engine.runtime.model import SecretFile
from hostpanel.agent import credentials as store
from hostpanel.agent import host_secrets
from hostpanel.deployments import desired
from hostpanel.deployments.models import Replica
from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host
from hostpanel.secrets import sealing
from hostpanel.secrets.services import create_secret
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import as_host, pem

VALUE = "s3cr3t-Value-4711"


# --- the construction --------------------------------------------------------------------------


def test_a_box_opens_only_with_its_hosts_key_replica_and_name() -> None:
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    aad = sealing.associated_data(7, "db-password")
    box = sealing.seal(a.public_key(), VALUE.encode(), aad)
    assert VALUE.encode() not in box and len(box) == sealing.HEADER_BYTES + len(VALUE) + 16
    assert sealing.open_sealed(a, box, aad) == VALUE.encode()
    assert sealing.seal(a.public_key(), VALUE.encode(), aad) != box  # a fresh ephemeral key each time
    with pytest.raises(sealing.SealError, match="does not open"):
        sealing.open_sealed(b, box, aad)  # another host's key
    for other in (sealing.associated_data(8, "db-password"), sealing.associated_data(7, "db-passwore")):
        with pytest.raises(sealing.SealError, match="does not open"):
            sealing.open_sealed(a, box, other)  # moved to another replica or name


@pytest.mark.parametrize("where", [1, 20, sealing.KEY_BYTES + 5, sealing.HEADER_BYTES, -1])
def test_any_altered_byte_is_refused(where: int) -> None:
    a = X25519PrivateKey.generate()
    aad = sealing.associated_data(1, "k")
    box = bytearray(sealing.seal(a.public_key(), VALUE.encode(), aad))
    box[where] ^= 0x01
    with pytest.raises(sealing.SealError):
        sealing.open_sealed(a, bytes(box), aad)


def test_short_wrong_version_and_low_order_boxes_are_refused() -> None:
    a = X25519PrivateKey.generate()
    aad = sealing.associated_data(1, "k")
    box = sealing.seal(a.public_key(), b"v", aad)
    for bad in (b"", box[:20], b"\x02" + box[1:]):
        with pytest.raises(sealing.SealError, match="wrong length or version"):
            sealing.open_sealed(a, bad, aad)
    zero_point = sealing.VERSION + bytes(32) + box[1 + 32 :]  # a low-order ephemeral key
    with pytest.raises(sealing.SealError):
        sealing.open_sealed(a, zero_point, aad)
    with pytest.raises(ValueError, match="not an X25519 key"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        ed = Ed25519PrivateKey.generate().public_key()
        sealing.load_public_key(
            ed.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        )
    assert isinstance(sealing.load_public_key(pem(a)), X25519PublicKey)


# --- the internal API door ---------------------------------------------------------------------


def place(tenant: Tenant, make_app: Any, admin_actor: Any, host: str) -> Replica:
    create_secret(admin_actor, tenant, "db-password", VALUE)
    create_secret(admin_actor, tenant, "other", "not-asked-for")
    make_app(tenant, secrets=[{"name": "db-password", "env": "DB_PASSWORD"}])
    replica = Replica.objects.get()
    Replica.objects.filter(pk=replica.pk).update(host=Host.objects.get(name=host))
    return Replica.objects.get()


@pytest.mark.django_db
def test_only_the_replicas_host_gets_its_secrets_sealed_to_its_key(
    enrolled: dict[str, tuple[X25519PrivateKey, str]], tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    replica = place(tenant, make_app, admin_actor, "sa")
    url = f"/internal/v1/replicas/{replica.pk}/secrets"
    (key_a, token_a), (key_b, token_b) = enrolled["sa"], enrolled["sb"]

    answer = as_host(token_a).get(url)
    assert answer.status_code == 200, answer.content
    assert VALUE.encode() not in answer.content and base64.b64encode(VALUE.encode()) not in answer.content
    sealed = answer.json()["secrets"]
    assert sorted(sealed) == ["db-password"]  # only what the replica uses
    assert host_secrets.open_secrets(key_a, replica.pk, sealed) == {"db-password": VALUE}
    with pytest.raises(sealing.SealError):
        host_secrets.open_secrets(key_b, replica.pk, sealed)  # sealed to A: B's key cannot open it
    with pytest.raises(sealing.SealError):
        host_secrets.open_secrets(key_a, replica.pk + 1, sealed)  # nor for another replica

    refused = as_host(token_b).get(url)  # B asks for A's replica
    assert refused.status_code == 404, refused.content
    assert refused.json()["error"]["message"] == f"No such replica: {replica.pk}"
    assert VALUE.encode() not in refused.content and b"db-password" not in refused.content
    missing = as_host(token_a).get(f"/internal/v1/replicas/{replica.pk + 1000}/secrets")
    assert missing.status_code == 404 and "No such replica" in missing.json()["error"]["message"]
    assert APIClient().get(url).status_code == 401  # no token
    assert as_host("hphost_forged").get(url).status_code == 401
    assert APIClient().get(url, HTTP_AUTHORIZATION="Bearer " + token_a + "x").status_code == 401

    Replica.objects.filter(pk=replica.pk).update(host=Host.objects.get(name="sb"))  # moved to B
    assert as_host(token_a).get(url).status_code == 404  # A lost it at once
    moved = as_host(token_b).get(url).json()["secrets"]
    assert host_secrets.open_secrets(key_b, replica.pk, moved) == {"db-password": VALUE}


@pytest.mark.django_db
def test_a_revoked_host_gets_nothing(
    enrolled: dict[str, tuple[X25519PrivateKey, str]], tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    replica = place(tenant, make_app, admin_actor, "sa")
    enrollment.revoke(None, "sa")
    answer = as_host(enrolled["sa"][1]).get(f"/internal/v1/replicas/{replica.pk}/secrets")
    assert answer.status_code == 401 and VALUE.encode() not in answer.content


# --- the enrolled agent ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_enrolled_agent_builds_the_spec_from_sealed_values(
    enrolled: dict[str, tuple[X25519PrivateKey, str]],
    tenant: Tenant,
    make_app: Any,
    admin_actor: Any,
    live_server: Any,
    tmp_path: Path,
) -> None:
    """An enrolled agent takes its replica's entry from its desired document and asks the internal
    API for the entry's secrets (here over plain HTTP: the live server), opening them with the key
    in its state directory, as its reconcile does before it runs a container (remote.py's _run)."""
    replica = place(tenant, make_app, admin_actor, "sa")
    key_a, token_a = enrolled["sa"]
    state = tmp_path / "state"
    store.save(state, store.AgentCredentials(live_server.url, "sa", token_a, "redis://unused", []))
    private = key_a.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    store.write_private(state / store.KEY_FILE, private)
    (entry,) = store.client_for(store.load(state)).desired()["replicas"]
    assert entry["replica"] == replica.pk
    names = [s["name"] for s in entry["secrets"]]

    spec = desired.container_spec(entry, host_secrets.fetch(state, replica.pk, names))
    assert spec.secrets == (SecretFile("db-password", VALUE.encode()),)
    assert f"DB_PASSWORD={VALUE}" in spec.env

    # Another host's key in the state directory: refused, no value.
    store.write_private(
        state / store.KEY_FILE,
        X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    with pytest.raises(sealing.SealError, match="does not open with this host's key"):
        host_secrets.fetch(state, replica.pk, names)
    # Placed elsewhere meanwhile: the panel answers 404 and the replica fails with that reason.
    store.write_private(state / store.KEY_FILE, private)
    Replica.objects.filter(pk=replica.pk).update(host=Host.objects.get(name="sb"))
    with pytest.raises(store.PanelError, match=f"404: No such replica: {replica.pk}"):
        host_secrets.fetch(state, replica.pk, names)
    assert json.loads((state / store.CREDENTIALS_FILE).read_text())["name"] == "sa"
