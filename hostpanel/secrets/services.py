"""Business rules of secrets: encryption at rest, create/update/delete, key rotation.

Keys: ``HOSTPANEL_SECRET_KEYS`` (comma-separated Fernet keys) or else the file
``<var>/secret_keys`` (one key a line, mode 0600, made on first use). The
first key encrypts, every key decrypts (MultiFernet). Rotation: put a new key
first (``manage.py rotate_secrets --new-key`` does it for the file), run
``manage.py rotate_secrets``, then drop the old keys.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from hostpanel.audit.services import Actor, audited
from hostpanel.errors import Conflict, InvalidRequest
from hostpanel.secrets import sealing
from hostpanel.secrets.models import Secret
from hostpanel.tenants.access import require_role
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.signals import apps_using

MAX_SECRET_BYTES = 64 * 1024


def key_file() -> Path:
    return Path(settings.VAR_DIR) / "secret_keys"


def load_keys() -> list[bytes]:
    """The Fernet keys, primary first (see the module docstring)."""
    raw = settings.HOSTPANEL_SECRET_KEYS or os.environ.get("HOSTPANEL_SECRET_KEYS", "")
    if raw.strip():
        return [k.strip().encode() for k in raw.split(",") if k.strip()]
    path = key_file()
    if not path.exists():
        _write_keys(path, [Fernet.generate_key()], exclusive=True)
    return [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]


def _write_keys(path: Path, keys: list[bytes], *, exclusive: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(k.decode() + "\n" for k in keys))
    os.chmod(tmp, 0o600)
    if exclusive and path.exists():  # another process made it first: keep theirs
        tmp.unlink()
        return
    os.replace(tmp, path)


def add_primary_key() -> bytes:
    """Put a new key first in the key file (not possible when keys come from the environment)."""
    if settings.HOSTPANEL_SECRET_KEYS:
        raise InvalidRequest("keys come from HOSTPANEL_SECRET_KEYS: put a new key first there instead")
    keys = load_keys()
    new = Fernet.generate_key()
    _write_keys(key_file(), [new, *keys])
    return new


def fernet() -> MultiFernet:
    return MultiFernet([Fernet(k) for k in load_keys()])


def encrypt(value: str) -> bytes:
    return fernet().encrypt(value.encode())


def decrypt(ciphertext: bytes) -> str:
    try:
        return fernet().decrypt(bytes(ciphertext)).decode()
    except InvalidToken as exc:
        raise InvalidRequest("a secret cannot be decrypted with the configured keys") from exc


def visible_secrets(actor: Actor, tenant: Tenant) -> QuerySet[Secret]:
    require_role(actor, tenant, Role.VIEWER)
    return Secret.objects.filter(tenant=tenant)


def _check_value(value: str) -> None:
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise InvalidRequest(f"a secret value may be at most {MAX_SECRET_BYTES} bytes")


def create_secret(actor: Actor, tenant: Tenant, name: str, value: str) -> Secret:
    require_role(actor, tenant, Role.DEVELOPER)
    _check_value(value)
    with audited(actor, "secret.create", tenant) as entry, transaction.atomic():
        try:
            secret = Secret.objects.create(tenant=tenant, name=name, ciphertext=encrypt(value))
        except IntegrityError as exc:
            raise Conflict(f"secret {name!r} exists already; update it instead") from exc
        entry.obj = secret
    return secret


def update_secret(actor: Actor, secret: Secret, value: str) -> Secret:
    """Replace the value; containers using it get it when they next start."""
    require_role(actor, secret.tenant, Role.DEVELOPER)
    _check_value(value)
    with audited(actor, "secret.update", secret.tenant, secret):
        secret.ciphertext = encrypt(value)
        secret.save(update_fields=["ciphertext", "updated_at"])
    return secret


def delete_secret(actor: Actor, secret: Secret) -> None:
    tenant = secret.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "secret.delete", tenant, secret):
        users = apps_using("secret", secret.name, tenant)
        if users:
            raise Conflict(
                f"secret {secret.name!r} is used by app(s) {', '.join(users)}; deploy without it first"
            )
        secret.delete()


def secret_values(tenant: Tenant, names: list[str]) -> dict[str, str]:
    """Decrypted values of the named secrets (host agents only, at container start)."""
    found = {s.name: s for s in Secret.objects.filter(tenant=tenant, name__in=names)}
    missing = sorted(set(names) - set(found))
    if missing:
        raise InvalidRequest(f"tenant {tenant.slug!r} has no secret(s) {', '.join(missing)}")
    return {name: decrypt(s.ciphertext) for name, s in found.items()}


def sealed_values(tenant: Tenant, names: list[str], public_key_pem: str, replica_id: int) -> dict[str, str]:
    """The named secrets sealed to one host's public key for one replica (see
    :mod:`hostpanel.secrets.sealing`), base64: what an enrolled host's agent receives. The plain
    values exist only in this process's memory while sealing."""
    recipient = sealing.load_public_key(public_key_pem)
    return {
        name: base64.b64encode(
            sealing.seal(recipient, value.encode(), sealing.associated_data(replica_id, name))
        ).decode()
        for name, value in secret_values(tenant, names).items()
    }


def rotate_all() -> int:
    """Re-encrypt every secret with the primary key; returns how many."""
    f = fernet()
    count = 0
    with transaction.atomic():
        for secret in Secret.objects.select_for_update().only("pk", "ciphertext"):
            Secret.objects.filter(pk=secret.pk).update(ciphertext=f.rotate(bytes(secret.ciphertext)))
            count += 1
    return count
