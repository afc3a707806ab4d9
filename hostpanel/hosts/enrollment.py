"""Enrollment: `host add` makes a pending host and a one-time join token; the host's join command
registers with it (public key in, credentials out); `host revoke` takes the credentials away.

Only SHA-256 hashes of the join and host tokens are stored. A join token is used once and expires
after ``HOSTPANEL_JOIN_TOKEN_SECONDS``. Registration gives the host a Redis ACL user (see
:mod:`hostpanel.hosts.redis_acl`) and a token for the internal API (/internal/v1/).
"""

from __future__ import annotations

import hashlib
import secrets
import shlex
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hostpanel.audit import services as audit
from hostpanel.audit.services import Actor
from hostpanel.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hostpanel.hosts import redis_acl
from hostpanel.hosts.models import Host, HostCredential, HostJoinToken
from hostpanel.tenants import access

JOIN_PREFIX = "hpjoin_"
HOST_TOKEN_PREFIX = "hphost_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Invitation:
    """What `host add` prints: the pending host, its join token (shown once) and the command."""

    host: Host
    token: str
    expires_at: object
    command: str


@dataclass(frozen=True)
class Credentials:
    """What a registering host receives (once): its internal-API token and its broker URL."""

    name: str
    api_token: str
    redis_url: str
    queues: tuple[str, str]
    transport_options: dict[str, str]


def join_command(token: str) -> str:
    """The command to run as root on the new host, in a checkout of the panel's version
    (deploy/join.sh; the panel's public URL from settings)."""
    return shlex.join(["sh", "deploy/join.sh", "--panel", settings.HOSTPANEL_PUBLIC_URL, "--token", token])


def add_host(actor: Actor | None, name: str) -> Invitation:
    """Create pending host ``name`` (down, no capacity until it registers) and a join token.

    ``actor`` None is the operator at the shell (`manage.py host add`); else staff only.
    A host that exists without live credentials (pending, revoked, or one an earlier version's
    agent registered with the database) gets a fresh token; its unused old ones die.
    """
    if actor is not None:
        access.require_admin(actor)
    if not redis_acl.HOST_NAME.match(name):
        raise InvalidRequest(
            f"host name {name!r}: use 1-63 lowercase letters, digits and inner dashes (e.g. node-2)"
        )
    token = JOIN_PREFIX + secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(seconds=settings.HOSTPANEL_JOIN_TOKEN_SECONDS)
    with transaction.atomic():
        host, created = Host.objects.select_for_update().get_or_create(
            name=name, defaults={"cpu_millis": 0, "memory_bytes": 0, "state": Host.State.DOWN}
        )
        if not created and _live_credential(host) is not None:
            raise Conflict(
                f"host {name!r} is already enrolled; revoke it first "
                f"(`manage.py host revoke {name}`) to enroll that machine again"
            )
        host.join_tokens.filter(used_at=None).delete()
        HostJoinToken.objects.create(host=host, token_hash=token_hash(token), expires_at=expires)
        if actor is not None:
            audit.record(actor, "host.enroll", tenant=None, obj=host, message="join token issued")
    return Invitation(host, token, expires, join_command(token))


def _live_credential(host: Host) -> HostCredential | None:
    return HostCredential.objects.filter(host=host, revoked_at=None).first()


def _public_key(pem: str) -> str:
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"public_key: not a PEM public key ({exc})") from exc
    if not isinstance(key, X25519PublicKey):
        raise InvalidRequest("public_key: give an X25519 public key (PEM, SubjectPublicKeyInfo)")
    return pem.strip() + "\n"


def register(token: str, public_key: str) -> Credentials:
    """Spend join ``token``: store the host's public key, make its Redis user and API token.

    Refused (403, nothing changed) when the token is unknown, used or expired.
    """
    pem = _public_key(public_key)
    with transaction.atomic():
        join = (
            HostJoinToken.objects.select_for_update()
            .select_related("host")
            .filter(token_hash=token_hash(token))
            .first()
        )
        if join is None:
            raise Forbidden("join token unknown: ask the operator for a new one (`manage.py host add NAME`)")
        if join.used_at is not None:
            raise Forbidden(
                f"join token already used (at {join.used_at:%Y-%m-%d %H:%M:%S} UTC): a join token "
                f"works once; ask for a new one (`manage.py host add {join.host.name}`)"
            )
        if join.expires_at <= timezone.now():
            raise Forbidden(
                f"join token expired at {join.expires_at:%Y-%m-%d %H:%M:%S} UTC; ask for a new one "
                f"(`manage.py host add {join.host.name}`)"
            )
        host = join.host
        join.used_at = timezone.now()
        join.save(update_fields=["used_at"])
        api_token = HOST_TOKEN_PREFIX + secrets.token_urlsafe(32)
        password = secrets.token_urlsafe(32)
        HostCredential.objects.filter(host=host).delete()
        credential = HostCredential.objects.create(
            host=host,
            public_key=pem,
            token_hash=token_hash(api_token),
            redis_user=redis_acl.user_name(host.name),
            redis_password_hash=redis_acl.password_hash(password),
        )
        redis_acl.set_host_user(host.name, credential.redis_password_hash)  # last: a failure rolls back
    return Credentials(
        name=host.name,
        api_token=api_token,
        redis_url=redis_acl.host_redis_url(host.name, password),
        queues=redis_acl.host_queues(host.name),
        transport_options=redis_acl.transport_options(credential.host.name),
    )


def authenticate(token: str) -> Host | None:
    """The host whose live internal-API token is ``token``, else None."""
    credential = (
        HostCredential.objects.select_related("host")
        .filter(token_hash=token_hash(token), revoked_at=None)
        .first()
    )
    return credential.host if credential is not None else None


def restore_redis_users() -> list[str]:
    """Re-create the Redis users of enrolled hosts that Redis lost (after its restart); their names."""
    restored = []
    for credential in HostCredential.objects.filter(revoked_at=None).select_related("host"):
        if redis_acl.ensure_host_user(credential.host.name, credential.redis_password_hash):
            restored.append(credential.host.name)
    return restored


def revoke(actor: Actor | None, name: str) -> Host:
    """Take ``name``'s credentials away at once: its Redis user is deleted (Redis drops its
    connections), its API token and unused join tokens stop working. Its heartbeats (internal API)
    then fail, so it is marked down after the grace period and its replicas move."""
    if actor is not None:
        access.require_admin(actor)
    host = Host.objects.filter(name=name).first()
    if host is None:
        raise NotFound(f"No such host: {name}")
    with transaction.atomic():
        HostCredential.objects.filter(host=host, revoked_at=None).update(revoked_at=timezone.now())
        host.join_tokens.filter(used_at=None).delete()
        if actor is not None:
            audit.record(actor, "host.revoke", tenant=None, obj=host)
        redis_acl.delete_host_user(host.name)
    host.refresh_from_db()
    return host


def enrollment_states() -> dict[int, str]:
    """Every host's enrollment (two queries): ``pending`` (a join token out), ``enrolled``,
    ``revoked``, or ``unenrolled`` (a host an earlier version's agent
    registered with the database, or a pending one whose tokens were revoked)."""
    credentials = dict(HostCredential.objects.values_list("host_id", "revoked_at"))
    pending = set(HostJoinToken.objects.filter(used_at=None).values_list("host_id", flat=True))
    states = {}
    for host_id in Host.objects.values_list("pk", flat=True):
        if host_id in credentials:
            states[host_id] = "revoked" if credentials[host_id] else "enrolled"
        else:
            states[host_id] = "pending" if host_id in pending else "unenrolled"
    return states


def enrollment_state(host: Host) -> str:
    """One host's enrollment (see :func:`enrollment_states`)."""
    return enrollment_states()[host.pk]
