"""Enroll and revoke hosts through the API (admins): ``POST /api/v1/hosts/enroll/ {"name"}``
answers the one-time join command; ``POST /api/v1/hosts/<id>/revoke/`` ends its credentials."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api.base import StrictSerializer
from hostpanel.hosts import enrollment


class EnrollSerializer(StrictSerializer):
    name = serializers.CharField(max_length=63)


JOIN = inline_serializer(
    "HostJoin",
    {
        "name": serializers.CharField(),
        "token": serializers.CharField(),
        "expires_at": serializers.DateTimeField(),
        "command": serializers.CharField(),
    },
)


class HostEnrollmentActions:
    """Actions mixed into the hosts viewset (it supplies ``actor`` and ``get_object``)."""

    actor: Any
    get_object: Any

    @extend_schema(request=EnrollSerializer, responses={201: JOIN})
    @action(detail=False, methods=["post"])
    def enroll(self, request: Request) -> Response:
        body = EnrollSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        invitation = enrollment.add_host(self.actor, body.validated_data["name"])
        return Response(
            {
                "name": invitation.host.name,
                "token": invitation.token,
                "expires_at": invitation.expires_at,
                "command": invitation.command,
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "HostRevoked", {"name": serializers.CharField(), "enrollment": serializers.CharField()}
            )
        },
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        host = enrollment.revoke(self.actor, self.get_object().name)
        return Response({"name": host.name, "enrollment": enrollment.enrollment_state(host)})
