"""Secrets: encrypted at rest, never returned, rotatable."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from hostpanel.secrets import services
from hostpanel.secrets.models import Secret
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def key_dir(settings: Any, tmp_path: Any) -> Any:
    settings.VAR_DIR = tmp_path
    settings.HOSTPANEL_SECRET_KEYS = ""
    return tmp_path


def test_value_is_encrypted_at_rest_and_never_returned(api: Any, tenant: Tenant, key_dir: Any) -> None:
    dev = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    base = f"/api/v1/tenants/{tenant.slug}/secrets/"
    r = api(dev).post(base, {"name": "db-password", "value": "hunter2-very-secret"}, format="json")
    assert r.status_code == 201
    for response in (r, api(dev).get(base), api(dev).get(base + "db-password/")):
        assert b"hunter2-very-secret" not in response.content
    secret = Secret.objects.get()
    assert b"hunter2" not in bytes(secret.ciphertext)
    assert services.decrypt(secret.ciphertext) == "hunter2-very-secret"
    key_file = key_dir / "secret_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_viewer_reads_names_but_cannot_set_values(api: Any, tenant: Tenant) -> None:
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    r = api(viewer).post(
        f"/api/v1/tenants/{tenant.slug}/secrets/", {"name": "x", "value": "y"}, format="json"
    )
    assert r.status_code == 403


def test_keys_from_the_environment_setting(settings: Any, tenant: Tenant, admin_actor: Any) -> None:
    key = Fernet.generate_key()
    settings.HOSTPANEL_SECRET_KEYS = key.decode()
    secret = services.create_secret(admin_actor, tenant, "k", "v")
    assert Fernet(key).decrypt(bytes(secret.ciphertext)) == b"v"


def test_rotate_secrets_reencrypts_with_a_new_primary_key(
    tenant: Tenant, admin_actor: Any, key_dir: Any
) -> None:
    secret = services.create_secret(admin_actor, tenant, "k", "value")
    old_key = services.load_keys()[0]
    call_command("rotate_secrets", "--new-key")
    keys = services.load_keys()
    assert len(keys) == 2 and keys[1] == old_key
    secret.refresh_from_db()
    assert Fernet(keys[0]).decrypt(bytes(secret.ciphertext)) == b"value"
    (key_dir / "secret_keys").write_text(keys[0].decode() + "\n")  # drop the old key
    assert services.decrypt(secret.ciphertext) == "value"


def test_a_secret_in_use_cannot_be_deleted(tenant: Tenant, admin_actor: Any, make_app: Any) -> None:
    services.create_secret(admin_actor, tenant, "token", "v")
    make_app(tenant, secrets=[{"name": "token", "env": "TOKEN"}])
    from hostpanel.errors import Conflict

    with pytest.raises(Conflict, match="used by app"):
        services.delete_secret(admin_actor, Secret.objects.get())
