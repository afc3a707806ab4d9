"""drf-spectacular extensions: how the token authentication appears in the OpenAPI schema, and
the schema class that documents what our base serializers enforce."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework.serializers import Serializer

from hostpanel.api.base import StrictSerializer


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "hostpanel.api.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "'Token <secret>': make one with POST /api/v1/tenants/<slug>/tokens/",
        }


class PanelAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, saying also that :class:`StrictSerializer` request bodies refuse
    unknown fields (``additionalProperties: false``)."""

    def _map_basic_serializer(self, serializer: Serializer, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False
        return schema
