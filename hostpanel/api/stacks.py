"""``/api/v1/tenants/<slug>/stacks/``: deploy a compose file (JSON, an upload or a git source),
read a stack and its services' state, redeploy it in place (PUT/PATCH), take it down (DELETE)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api.base import ModelSerializer, StrictSerializer, TenantScopedViewSet
from hostpanel.api.builds import JsonObjectField
from hostpanel.deployments.models import Replica
from hostpanel.domains.hostnames import auto_hostname
from hostpanel.errors import InvalidRequest
from hostpanel.stacks import services, sources
from hostpanel.stacks.models import STACK_NAME_RE, Stack, StackService
from hostpanel.tenants.models import Tenant


class StackReplicaSerializer(ModelSerializer):
    host = serializers.CharField(source="host.name", default=None)

    class Meta:
        model = Replica
        fields = ["index", "container_name", "state", "health", "host", "ports", "exit_code", "message"]


class StackServiceSerializer(ModelSerializer):
    app = serializers.CharField(source="app.name", default=None, help_text="the app that runs it (same name)")
    app_state = serializers.CharField(source="app.state", default=None)
    release = serializers.IntegerField(source="app.current_release.version", default=None)
    hostname = serializers.SerializerMethodField(help_text="its HTTP hostname (the first published TCP port)")
    replicas = serializers.SerializerMethodField()

    class Meta:
        model = StackService
        fields = [
            "name",
            "state",
            "message",
            "depends_on",
            "digest",
            "app",
            "app_state",
            "release",
            "hostname",
            "replicas",
        ]

    def get_hostname(self, service: StackService) -> str | None:
        return auto_hostname(service.app) if service.app is not None else None

    @extend_schema_field(StackReplicaSerializer(many=True))
    def get_replicas(self, service: StackService) -> list[dict[str, Any]]:
        if service.app is None:
            return []
        # the replicas and their hosts come prefetched with the stack (StackViewSet.queryset)
        return list(StackReplicaSerializer(service.app.replicas.all(), many=True).data)


class StackSerializer(ModelSerializer):
    services = StackServiceSerializer(many=True)
    compose = serializers.CharField(source="source", help_text="the compose file as deployed")
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = Stack
        fields = [
            "name",
            "status",
            "message",
            "source_kind",
            "git_url",
            "git_file",
            "env",
            "compose",
            "services",
            "created_by",
            "created_at",
            "updated_at",
        ]


class GitSourceSerializer(StrictSerializer):
    url = serializers.CharField(
        max_length=1000,
        help_text="PATH[#REF][:DIR] of a repository in the tenant's own build-context directory",
    )
    file = serializers.CharField(
        max_length=255, required=False, default="", allow_blank=True, help_text="default: compose.yaml"
    )


class StackSourceSerializer(StrictSerializer):
    """One source: ``compose`` (the text), ``file`` (an upload: a compose file or a project tar) or
    ``git``; and ``env`` for ${VAR} interpolation."""

    compose = serializers.CharField(required=False, trim_whitespace=False, help_text="the compose file")
    file = serializers.FileField(required=False, help_text="a compose file, or a tar of the project")
    git = GitSourceSerializer(required=False)
    env = JsonObjectField(required=False)

    def compose_source(self, tenant: Tenant, *, required: bool) -> sources.Source | None:
        data = self.validated_data
        given = [k for k in ("compose", "file", "git") if k in data]
        if len(given) > 1 or (required and not given):
            raise InvalidRequest("give one source: compose (the text), file (an upload) or git, not several")
        if "compose" in data:
            return sources.pasted(data["compose"])
        if "file" in data:
            return sources.uploaded(tenant, data["file"])
        if "git" in data:
            return sources.from_git(tenant, data["git"]["url"], data["git"]["file"])
        return None


class StackCreateSerializer(StackSourceSerializer):
    name = serializers.RegexField(
        STACK_NAME_RE, help_text="the stack's name: its networks and volumes start with it"
    )


DOWN_VOLUMES = OpenApiParameter(
    "volumes", OpenApiTypes.BOOL, description="also delete the named volumes the stack made (default: kept)"
)


class StackViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """A tenant's stacks: one compose file each, deployed as apps (one per service)."""

    queryset = Stack.objects.select_related("tenant", "created_by").prefetch_related(
        "services__app__current_release",
        "services__app__tenant",
        Prefetch("services__app__replicas", queryset=Replica.objects.select_related("host")),
    )
    serializer_class = StackSerializer
    lookup_field = "name"
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def _respond(self, stack: Stack, code: int = status.HTTP_200_OK) -> Response:
        return Response(StackSerializer(self.get_queryset().get(pk=stack.pk)).data, status=code)

    @extend_schema(
        request={"application/json": StackCreateSerializer, "multipart/form-data": StackCreateSerializer},
        responses={201: StackSerializer},
    )
    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = StackCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source = serializer.compose_source(self.tenant, required=True)
        assert source is not None
        try:
            stack = services.create_stack(
                self.actor,
                self.tenant,
                serializer.validated_data["name"],
                source,
                serializer.validated_data.get("env"),
            )
        except BaseException:
            sources.forget_project_dir(self.tenant, source.project_dir)
            raise
        return self._respond(stack, status.HTTP_201_CREATED)

    @extend_schema(
        request={"application/json": StackSourceSerializer, "multipart/form-data": StackSourceSerializer},
        responses=StackSerializer,
    )
    def update(self, request: Request, tenant_slug: str, name: str) -> Response:
        """Redeploy: a new source and/or env (none: the stored file again, a git one read anew)."""
        stack = self.get_object()
        serializer = StackSourceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source = serializer.compose_source(self.tenant, required=False)
        try:
            stack = services.redeploy_stack(self.actor, stack, source, serializer.validated_data.get("env"))
        except BaseException:
            if source is not None and source.project_dir != stack.project_dir:
                sources.forget_project_dir(self.tenant, source.project_dir)
            raise
        return self._respond(stack)

    @extend_schema(
        request={"application/json": StackSourceSerializer, "multipart/form-data": StackSourceSerializer},
        responses=StackSerializer,
    )
    def partial_update(self, request: Request, tenant_slug: str, name: str) -> Response:
        return self.update(request, tenant_slug, name)

    @extend_schema(parameters=[DOWN_VOLUMES], responses={204: None})
    def destroy(self, request: Request, tenant_slug: str, name: str) -> Response:
        """Down: removes every app and network the stack made; its volumes only with ?volumes=true."""
        flag = request.query_params.get("volumes", "false").lower()
        if flag not in ("true", "false", "1", "0"):
            raise InvalidRequest("volumes: give true or false")
        services.down_stack(self.actor, self.get_object(), volumes=flag in ("true", "1"))
        return Response(status=status.HTTP_204_NO_CONTENT)
