"""Who calls the registry and what they may do with a repository.

Credentials (see README "Registry"):

- HTTP basic with a panel API token (``hp_...``) as the password; the username
  is ignored (any name works, e.g. ``docker login -u token``). The token confines
  its user to the token's tenant, as in the REST API, and never carries admin powers.
- HTTP basic with a user's own username and password: the user acts in all its
  tenants, and a staff user as an admin (the only way to push ``library/...``).
- ``Authorization: Bearer <token>`` with a token from ``GET /v2/token`` (the
  Docker token flow) or from :func:`agent_pull_token` (host agents); these can
  also be given as the basic password. A bearer token is signed with the
  SECRET_KEY, expires, and grants at most the scopes it names, never more than
  its user may do at the time of the request.

What each operation requires, and who may do it, is said here once:
:class:`Operation` names every operation on a repository with the action (the
token scope: pull, push or delete) it requires; the view authorizes each
request once, at the door, with it, and its ``401`` challenge names that scope.
:data:`LEAST_ROLE` is the least tenant role that may take each action in the
tenant's repositories (viewers pull; developers and owners also push and delete);
``library/...`` is pulled by everyone authenticated and written by admins; host
agents pull everything. The token service grants the requested actions the
caller may take, nothing more, so a viewer never holds a delete scope.
"""

from __future__ import annotations

import base64
import binascii
import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing
from django.http import HttpRequest

from hostpanel.audit.services import Actor
from hostpanel.hosts.models import Host
from hostpanel.registry.errors import TooManyRequests, Unauthorized
from hostpanel.tenants.access import at_least, role_of
from hostpanel.tenants.access import source_address as client_address
from hostpanel.tenants.logins import LockedOut, password_login
from hostpanel.tenants.models import ApiToken, Role, Tenant
from hostpanel.tenants.services import TOKEN_PREFIX, authenticate_token

SERVICE = "hostpanel"
LIBRARY = "library"
"""The reserved namespace of base images that admins publish for every tenant."""
BEARER_PREFIX = "hpreg."
PULL, PUSH, DELETE = "pull", "push", "delete"
ACTIONS = (PULL, PUSH, DELETE)
_SALT = "hostpanel.registry.bearer"
ANY_REPOSITORY = "*"


class Operation(enum.Enum):
    """An operation on a repository: ``(audit name, required action)``, the one table of requirements.

    Reads need ``pull``; uploads and manifest pushes ``push``; deleting a
    manifest, a tag or a blob needs ``delete`` and nothing else (a token scoped
    ``repository:<name>:delete`` deletes). A cross-repository mount is an upload
    into the target and a read (:attr:`READ_MOUNT_SOURCE`) of the source.
    """

    READ_MANIFEST = ("manifest.read", PULL)
    PUSH_MANIFEST = ("manifest.push", PUSH)
    DELETE_MANIFEST = ("manifest.delete", DELETE)
    READ_BLOB = ("blob.read", PULL)
    UPLOAD_BLOB = ("blob.upload", PUSH)
    READ_MOUNT_SOURCE = ("blob.mount", PULL)
    DELETE_BLOB = ("blob.delete", DELETE)
    LIST_TAGS = ("tags.list", PULL)

    @property
    def action(self) -> str:
        """The action (token scope) the operation requires."""
        return self.value[1]

    @property
    def audit(self) -> str:
        """The audit log action of the operation (writes, and refused writes, are logged)."""
        return f"registry.{self.value[0]}"


LEAST_ROLE: Mapping[str, str] = MappingProxyType(
    {PULL: Role.VIEWER, PUSH: Role.DEVELOPER, DELETE: Role.DEVELOPER}
)
"""The least tenant role that may take each action in the tenant's repositories."""


def challenge_scope(repository: str, action: str) -> str:
    """The scope a ``401`` challenge names for ``action`` on ``repository``.

    A push challenge also asks for pull, as Docker's registry does, so the
    pushing client's one token also reads back what it pushes.
    """
    actions = f"{PULL},{PUSH}" if action == PUSH else action
    return f"repository:{repository}:{actions}"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a panel actor, or a host agent (``agent_host``).

    ``scopes`` is None for basic credentials (everything the actor may do) and
    the granted actions per repository for a bearer token.
    """

    actor: Actor
    agent_host: str | None = None
    scopes: Mapping[str, frozenset[str]] | None = None
    via_bearer: bool = False

    @property
    def name(self) -> str:
        return f"agent:{self.agent_host}" if self.agent_host else self.actor.name


def role_actions(principal: Principal, repository: str) -> frozenset[str]:
    """The actions the principal's role allows on ``repository`` now, whatever its token's scopes."""
    namespace = repository.split("/", 1)[0]
    if principal.agent_host is not None:
        return frozenset({PULL})
    if namespace == LIBRARY:
        return frozenset(ACTIONS) if principal.actor.is_admin else frozenset({PULL})
    tenant = Tenant.objects.filter(slug=namespace).first()
    role = role_of(principal.actor, tenant) if tenant is not None else None
    return frozenset(action for action, least in LEAST_ROLE.items() if at_least(role, least))


def permitted_actions(principal: Principal, repository: str) -> frozenset[str]:
    """The actions (pull/push/delete) the principal may take on ``repository``, now.

    Those its role allows, narrowed to the scopes of its bearer token if it has one.
    """
    allowed = role_actions(principal, repository)
    if principal.scopes is not None:
        granted = principal.scopes.get(repository, frozenset()) | principal.scopes.get(
            ANY_REPOSITORY, frozenset()
        )
        allowed &= granted
    return allowed


# ---- credentials ------------------------------------------------------------------------
def authenticate_request(request: HttpRequest) -> Principal | None:
    """The principal of the request's ``Authorization`` header; None without one.

    Unauthorized if it is wrong; TooManyRequests while password logins are locked
    out (a username and password count toward the panel's login lockout).
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    source_address = client_address(request)
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return principal_from_bearer(value, source_address)
    if scheme.lower() != "basic":
        raise Unauthorized(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")
    try:
        username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("malformed basic credentials") from exc
    if password.startswith(BEARER_PREFIX):
        return principal_from_bearer(password, source_address)
    if password.startswith(TOKEN_PREFIX):
        token = authenticate_token(password)
        if token is None:
            raise Unauthorized("invalid, expired or revoked API token; make a new one in the panel")
        return Principal(Actor(user=token.user, token=token, source_address=source_address))
    try:
        user = password_login(request, username, password)
    except LockedOut as exc:
        raise TooManyRequests(str(exc)) from exc
    if user is None:
        raise Unauthorized(
            "wrong username or password; log in with a panel API token as the password "
            "(docker login -p hp_...)"
        )
    return Principal(Actor(user=user, source_address=source_address))


def _sign(payload: dict[str, Any]) -> str:
    return BEARER_PREFIX + signing.dumps(payload, salt=_SALT, compress=True)


def principal_from_bearer(token: str, source_address: str | None = None) -> Principal:
    """Check a registry bearer token (signature, expiry, that its user/token/host still exists)."""

    if not token.startswith(BEARER_PREFIX):
        raise Unauthorized("not a registry token: get one from /v2/token")
    try:
        payload = signing.loads(token[len(BEARER_PREFIX) :], salt=_SALT)
    except signing.BadSignature as exc:
        raise Unauthorized("invalid registry token: get a new one from /v2/token") from exc
    if not isinstance(payload, dict) or float(payload.get("exp", 0)) < time.time():
        raise Unauthorized("the registry token expired: get a new one from /v2/token")
    scopes = {repo: frozenset(actions) for repo, actions in dict(payload.get("access", {})).items()}
    if payload.get("host"):
        if not Host.objects.filter(name=payload["host"]).exists():
            raise Unauthorized("the host of this agent token is gone")
        return Principal(Actor(user=None, source_address=source_address), payload["host"], scopes, True)
    api_token: ApiToken | None = None
    if payload.get("token") is not None:
        api_token = ApiToken.objects.select_related("user").filter(pk=payload["token"]).first()
        if api_token is None or not api_token.is_active:
            raise Unauthorized("the API token behind this registry token was revoked or expired")
        user = api_token.user
    else:
        user = get_user_model().objects.filter(pk=payload.get("user")).first()
    if user is None or not user.is_active:
        raise Unauthorized("the user of this registry token is gone or disabled")
    return Principal(Actor(user=user, token=api_token, source_address=source_address), None, scopes, True)


def parse_scopes(scopes: Iterable[str]) -> dict[str, set[str]]:
    """``repository:<name>:<actions>`` scope strings as repository -> actions (others ignored)."""
    wanted: dict[str, set[str]] = {}
    for scope in scopes:
        for item in scope.split(" "):
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            requested = {a for a in actions.split(",") if a}
            if "*" in requested:
                requested = set(ACTIONS)
            wanted.setdefault(name, set()).update(requested & set(ACTIONS))
    return wanted


def issue_bearer(principal: Principal, scopes: Iterable[str], ttl: int) -> tuple[str, dict[str, list[str]]]:
    """A bearer token granting the requested scopes that the principal may take (others dropped)."""
    access = {
        repo: sorted(actions & permitted_actions(principal, repo))
        for repo, actions in parse_scopes(scopes).items()
    }
    actor = principal.actor
    payload: dict[str, Any] = {
        "user": getattr(actor.user, "pk", None),
        "token": actor.token.pk if actor.token is not None else None,
        "host": principal.agent_host,
        "access": access,
        "exp": time.time() + ttl,
    }
    return _sign(payload), access


def sign_agent_token(host_name: str, ttl: int) -> str:
    """A bearer token for host agent ``host_name`` with pull rights on every repository."""
    return _sign({"host": host_name, "access": {ANY_REPOSITORY: [PULL]}, "exp": time.time() + ttl})
