"""``/api/v1/tenants/<slug>/builds/``: start builds (multipart or JSON) and read their status and output."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api.base import ModelSerializer, StrictSerializer, TenantScopedViewSet
from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.images.models import IMAGE_NAME_RE


class BuildSerializer(ModelSerializer):
    image = serializers.CharField(source="image.reference", default=None, read_only=True)
    host = serializers.CharField(source="host.name", default=None, read_only=True)
    log_stream = serializers.SerializerMethodField()

    class Meta:
        model = Build
        fields = [
            "id",
            "name",
            "reference",
            "dockerfile",
            "dockerfile_text",
            "git_url",
            "build_args",
            "target",
            "no_cache",
            "status",
            "error",
            "image",
            "host",
            "log_stream",
            "output",
            "created_at",
            "dispatched_at",
            "started_at",
            "finished_at",
        ]

    def get_log_stream(self, build: Build) -> str:
        return f"/ws/logs/build/{build.pk}/"


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class JsonObjectField(serializers.JSONField):
    """A JSON object, also accepted as a JSON string (multipart forms)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data or "{}")
            except ValueError:
                raise serializers.ValidationError("not valid JSON") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("expected an object of NAME: value")
        return data


class BuildRequestSerializer(StrictSerializer):
    name = serializers.RegexField(
        IMAGE_NAME_RE,
        max_length=192,
        help_text="<name>[:<tag>]; the image is <tenant>/<name>:<tag>",
        error_messages={"invalid": "give <name>[:<tag>] in lowercase letters, digits, '.', '_', '-'"},
    )
    context = serializers.FileField(required=False, help_text="the build context as a tar (gzip allowed)")
    context_path = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=500,
        help_text="a directory on the host in the tenant's own <root>/<tenant>/ under an allowed root",
    )
    git_url = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=1000,
        help_text="a git repository on the host in the tenant's own <root>/<tenant>/: PATH or file://PATH, "
        "optionally #REF[:DIR] (branch or tag, directory)",
    )
    dockerfile = serializers.CharField(required=False, default="Dockerfile", max_length=500)
    dockerfile_text = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=False,
        help_text="the Dockerfile itself, used instead of the context's (a context is then optional)",
    )
    build_args = JsonObjectField(required=False, default=dict)
    target = serializers.CharField(required=False, default="", allow_blank=True, max_length=128)
    no_cache = serializers.BooleanField(required=False, default=False)


class BuildViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Builds of the tenant's images: developers start them, viewers read status and output."""

    queryset = Build.objects.select_related("image", "host")
    serializer_class = BuildSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(request={"multipart/form-data": BuildRequestSerializer}, responses=BuildSerializer)
    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = BuildRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        build = services.start_build(
            self.actor,
            self.tenant,
            name=data["name"],
            context=data.get("context"),
            context_path=data["context_path"],
            git_url=data["git_url"],
            dockerfile=data["dockerfile"],
            dockerfile_text=data["dockerfile_text"],
            build_args=data["build_args"],
            target=data["target"],
            no_cache=data["no_cache"],
        )
        return Response(BuildSerializer(build).data, status=status.HTTP_201_CREATED)
