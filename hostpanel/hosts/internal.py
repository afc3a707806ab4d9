"""The panel's internal API for host agents: /internal/v1/ (HTTPS through the panel's front door).

- ``POST register`` (no auth: the one-time join token is in the body) spends the token and
  answers the host's credentials, once;
- ``POST heartbeat`` and ``GET host`` ("my specs") need ``Authorization: Bearer <host token>``:
  a revoked or unknown token is a 401 at once. A heartbeat may carry ``{"running": {replica id:
  generation}}``, what the host runs; its answer's ``fence`` lists the replicas whose containers
  it must remove (moved away or placed anew while it was cut off: hosts/fencing.py).
- ``POST host/purged`` (host token): what the agent did of the purges its
  desired document named (``purge_tenants``): ``{"purged": [slug, ...], "failed": {slug: error}}``,
  written with :func:`services.record_purge` to the caller's
  own :class:`TenantPurge` rows only; a slug it has no row of is ignored and listed in the answer.
  Unknown fields, wrong types, a slug twice, bad slugs, long errors or long lists are a 400 that
  changes nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.urls import path
from rest_framework import authentication, exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hostpanel.hosts import enrollment, redis_acl, services
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import SLUG_RE

log = logging.getLogger(__name__)


class HostTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer hphost_...``: the enrolled host whose live token it is."""

    def authenticate(self, request: Request) -> tuple[Host, str] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0].lower() != "bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("give the host token as `Authorization: Bearer <token>`")
        host = enrollment.authenticate(header[1])
        if host is None:
            raise exceptions.AuthenticationFailed(
                "host token unknown or revoked: enroll this host again (`manage.py host add NAME`)"
            )
        return host, header[1]

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="hostpanel-internal"'


class IsHost(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Host)


class HostView(APIView):
    schema = None  # internal: not in the public API's OpenAPI document
    authentication_classes = [HostTokenAuthentication]
    permission_classes = [IsHost]


def refuse_unknown(data: object, known: set[str], where: str) -> None:
    """A 400 naming the fields of ``data`` (a dict) not in ``known``."""
    if isinstance(data, dict) and (unknown := sorted(set(data) - known)):
        raise serializers.ValidationError({where: [f"unknown field(s): {', '.join(unknown)}"]})


def valid_body(request: Request, serializer: type[serializers.Serializer], where: str) -> dict[str, Any]:
    """The request's body as ``serializer`` reads it; an unknown field or a bad value is a 400."""
    body = serializer(data=request.data)
    refuse_unknown(request.data, set(body.fields), where)
    body.is_valid(raise_exception=True)
    data: dict[str, Any] = body.validated_data
    return data


def host_body(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "state": host.state,
        "queues": [host.queue, host.build_queue],
        "cpu_millis": host.cpu_millis,
        "memory_bytes": host.memory_bytes,
    }


class RegisterSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)
    public_key = serializers.CharField(max_length=4000)


class Register(APIView):
    schema = None
    authentication_classes: list[type] = []
    permission_classes = [permissions.AllowAny]

    def post(self, request: Request) -> Response:
        body = RegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(body.fields))
        if unknown:
            raise serializers.ValidationError({k: ["unknown field"] for k in unknown})
        creds = enrollment.register(body.validated_data["token"], body.validated_data["public_key"])
        return Response(
            {
                "name": creds.name,
                "api_token": creds.api_token,
                "redis_url": creds.redis_url,
                "queues": list(creds.queues),
                "transport_options": creds.transport_options,
            },
            status=status.HTTP_201_CREATED,
        )


class Heartbeat(HostView):
    def post(self, request: Request) -> Response:
        host: Host = request.user
        running = request.data.get("running") or {} if isinstance(request.data, dict) else None
        if (
            set(request.data) - {"running"}
            or not isinstance(running, dict)
            or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                for k, v in running.items()
            )
        ):
            raise serializers.ValidationError(
                {"running": ["give {replica id: generation} of the containers this host runs, or nothing"]}
            )
        fence = services.heartbeat(host.pk, running)
        try:  # Redis restarted without its ACL users: this host's comes back before its next poll
            credential = host.credential
            redis_acl.ensure_host_user(host.name, credential.redis_password_hash)
        except redis_acl.BrokerUnavailable:
            log.warning("host %s: could not check its Redis user", host.name)
        host.refresh_from_db()
        return Response(host_body(host) | {"fence": fence})


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF's own also takes numbers)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class PurgedSerializer(serializers.Serializer):
    purged = serializers.ListField(
        child=StrictCharField(max_length=63), max_length=services.PURGES_PER_DOCUMENT, default=list
    )
    failed = serializers.DictField(child=StrictCharField(max_length=services.PURGE_ERROR_MAX), default=dict)

    def validate_purged(self, value: list[str]) -> list[str]:
        _slugs(value)
        if len(set(value)) != len(value):
            raise serializers.ValidationError("each slug at most once")
        return value

    def validate_failed(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > services.PURGES_PER_DOCUMENT:
            raise serializers.ValidationError(f"at most {services.PURGES_PER_DOCUMENT} slugs")
        _slugs(list(value))
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if both := sorted(set(data["purged"]) & set(data["failed"])):
            raise serializers.ValidationError({"failed": [f"purged and failed at once: {', '.join(both)}"]})
        return data


def _slugs(slugs: list[str]) -> None:
    """A 400 naming (the start of) the first few of ``slugs`` that are no tenant slug."""
    if bad := [slug for slug in slugs if not re.fullmatch(SLUG_RE, slug)]:
        raise serializers.ValidationError(f"not a tenant slug: {', '.join(repr(b[:64]) for b in bad[:5])}")


class Purged(HostView):
    def post(self, request: Request) -> Response:
        body = valid_body(request, PurgedSerializer, "purged")
        return Response(services.record_purges(request.user, body["purged"], body["failed"]))


class Me(HostView):
    def get(self, request: Request) -> Response:
        return Response(host_body(request.user))


urlpatterns = [
    path("register", Register.as_view(), name="internal-register"),
    path("heartbeat", Heartbeat.as_view(), name="internal-heartbeat"),
    path("host", Me.as_view(), name="internal-host"),
    path("host/purged", Purged.as_view(), name="internal-host-purged"),
]
