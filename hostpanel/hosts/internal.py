"""The panel's internal API for host agents: /internal/v1/ (HTTPS through the panel's front door).

- ``POST register`` (no auth: the one-time join token is in the body) spends the token and
  answers the host's credentials, once;
- ``POST heartbeat`` and ``GET host`` ("my specs") need ``Authorization: Bearer <host token>``:
  a revoked or unknown token is a 401 at once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.urls import path
from rest_framework import authentication, exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hostpanel.hosts import enrollment, redis_acl, services
from hostpanel.hosts.models import Host

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
        services.heartbeat(host.pk)
        try:  # Redis restarted without its ACL users: this host's comes back before its next poll
            credential = host.credential
            redis_acl.ensure_host_user(host.name, credential.redis_password_hash)
        except redis_acl.BrokerUnavailable:
            log.warning("host %s: could not check its Redis user", host.name)
        host.refresh_from_db()
        return Response(host_body(host))


class Me(HostView):
    def get(self, request: Request) -> Response:
        return Response(host_body(request.user))


urlpatterns = [
    path("register", Register.as_view(), name="internal-register"),
    path("heartbeat", Heartbeat.as_view(), name="internal-heartbeat"),
    path("host", Me.as_view(), name="internal-host"),
]
