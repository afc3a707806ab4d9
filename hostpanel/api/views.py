"""API views: validate, call a service, return. Scoping and roles come from the base classes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api import serializers as s
from hostpanel.api.base import ActorMixin, AdminViewSetMixin, TenantScopedViewSet
from hostpanel.api.host_enrollment import HostEnrollmentActions
from hostpanel.api.kept_lists import KeptList, KeptTokenList
from hostpanel.audit.models import AuditLog
from hostpanel.deployments import services as deployments
from hostpanel.deployments.changes import release_changes
from hostpanel.deployments.models import App, Release, Replica, Rollout
from hostpanel.errors import InvalidRequest
from hostpanel.hosts import services as hosts
from hostpanel.hosts.models import Host
from hostpanel.images import services as images
from hostpanel.images.models import Image
from hostpanel.logstream import services as logstream
from hostpanel.secrets import services as secrets
from hostpanel.secrets.models import Secret
from hostpanel.tenants import access
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import ApiToken, Membership, Quota, Role, Tenant
from hostpanel.usage import services as usage
from hostpanel.usage.models import Prices
from hostpanel.volumes import services as volumes
from hostpanel.volumes.models import Volume


def _valid(serializer_class: type, data: Any, **kwargs: Any) -> Any:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer


# ---- tenants ------------------------------------------------------------------------
class TenantViewSet(ActorMixin, viewsets.ModelViewSet):
    """Tenants the caller belongs to (admins: all). Admins create and delete them."""

    serializer_class = s.TenantSerializer
    lookup_field = "slug"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Tenant]:
        return access.visible_tenants(self.actor)

    def get_object(self) -> Tenant:
        return access.get_tenant(self.actor, self.kwargs["slug"])

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.TenantSerializer, request.data).validated_data
        tenant = tenants.create_tenant(self.actor, data["slug"], data.get("name", ""), data.get("owner"))
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TenantUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.TenantUpdateSerializer, request.data, partial=True).validated_data
        tenant = access.get_tenant(self.actor, self.kwargs["slug"], Role.OWNER)
        if "name" in data:
            tenant = tenants.update_tenant(self.actor, tenant, data["name"])
        return Response(s.TenantSerializer(tenant).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tenants.delete_tenant(self.actor, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberViewSet(KeptList, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet):
    """Members of a tenant and their roles; owners manage them."""

    kept_group = "members"
    queryset = Membership.objects.select_related("user", "tenant")
    serializer_class = s.MembershipSerializer
    write_role = Role.OWNER
    tenant_ordering = ("user_id",)  # Meta: tenant, user (a user has no ordering: its id)
    list_select_related = ("user",)

    def create(self, request: Request, tenant_slug: str) -> Response:
        data = _valid(s.MembershipSerializer, request.data).validated_data
        membership = tenants.add_member(self.actor, self.tenant, data["user"]["username"], data["role"])
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.RoleSerializer)
    def partial_update(self, request: Request, tenant_slug: str, pk: str) -> Response:
        data = _valid(s.RoleSerializer, request.data, partial=True).validated_data
        membership = self.get_object()
        if "role" in data:
            membership = tenants.change_role(self.actor, membership, data["role"])
        return Response(s.MembershipSerializer(membership).data)

    def perform_destroy(self, instance: Membership) -> None:
        tenants.remove_member(self.actor, instance)


class TokenViewSet(KeptTokenList, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """API tokens: any member makes its own (the secret is shown once); DELETE revokes."""

    queryset = ApiToken.objects.select_related("user", "tenant")
    serializer_class = s.TokenSerializer
    write_role = Role.VIEWER

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return tenants.visible_tokens(self.actor, self.tenant).select_related("user")

    @extend_schema(request=s.TokenSerializer, responses=s.NewTokenSerializer)
    def create(self, request: Request, tenant_slug: str) -> Response:
        data = _valid(s.TokenSerializer, request.data).validated_data
        token, secret = tenants.create_token(self.actor, self.tenant, data["name"], data.get("expires_at"))
        body = s.TokenSerializer(token).data | {"secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        tenants.revoke_token(self.actor, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class QuotaViewSet(TenantScopedViewSet):
    """The tenant's quota and what it uses; members read it, admins change it."""

    queryset = Quota.objects.select_related("tenant")
    serializer_class = s.QuotaSerializer
    write_role = Role.VIEWER  # the service requires an admin

    def get_object(self) -> Quota:
        """The tenant's one quota (the URL has no id; OPTIONS asks for it too)."""
        quota: Quota = self.get_queryset().get()
        self.check_object_permissions(self.request, quota)
        return quota

    def retrieve(self, request: Request, tenant_slug: str) -> Response:
        return Response(s.QuotaSerializer(self.get_object()).data)

    def partial_update(self, request: Request, tenant_slug: str) -> Response:
        serializer = _valid(s.QuotaSerializer, request.data, partial=True)
        quota = tenants.update_quota(self.actor, self.tenant, **serializer.validated_data)
        return Response(s.QuotaSerializer(quota).data)


class AuditViewSet(KeptList, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's audit log (owners and admins). Filter: ?action=app.deploy&result=denied."""

    kept_group = "audit"
    queryset = AuditLog.objects.select_related("tenant")
    serializer_class = s.AuditLogSerializer
    read_role = Role.OWNER
    write_role = Role.OWNER
    filter_fields = ("action", "result")
    list_select_related = ()

    def get_queryset(self) -> QuerySet[AuditLog]:
        qs = super().get_queryset()
        for key in self.filter_fields:
            if key in self.request.query_params:
                qs = qs.filter(**{key: self.request.query_params[key]})
        return qs


class GlobalAuditViewSet(AdminViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Every tenant's audit log, and changes outside tenants (hosts, tenant creation): admins."""

    queryset = AuditLog.objects.select_related("tenant")
    serializer_class = s.AuditLogSerializer

    def get_queryset(self) -> QuerySet[AuditLog]:
        qs = super().get_queryset()
        for key in ("action", "result"):
            if key in self.request.query_params:
                qs = qs.filter(**{key: self.request.query_params[key]})
        if "tenant" in self.request.query_params:
            qs = qs.filter(tenant__slug=self.request.query_params["tenant"])
        return qs


# ---- hosts (admins) ------------------------------------------------------------------
class HostViewSet(HostEnrollmentActions, AdminViewSetMixin, viewsets.ModelViewSet):
    """Container hosts (admins). Agents register themselves; POST pre-registers one."""

    queryset = Host.objects.all()  # for schema introspection; requests use get_queryset
    serializer_class = s.HostSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Host]:
        if getattr(self, "swagger_fake_view", False):
            return Host.objects.none()
        return hosts.hosts_with_use(self.actor)

    def perform_create(self, serializer: s.HostSerializer) -> None:
        serializer.instance = hosts.create_host(self.actor, **serializer.validated_data)

    def perform_update(self, serializer: s.HostSerializer) -> None:
        serializer.instance = hosts.update_host(self.actor, serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Host) -> None:
        hosts.delete_host(self.actor, instance)

    def _lifecycle(self, action: str) -> Response:
        """Cordon, uncordon, drain or evacuate the host (hosts/lifecycle.py); answers the host."""
        host = hosts.change_lifecycle(self.actor, self.get_object(), action)
        return Response(s.HostSerializer(self.get_queryset().get(pk=host.pk)).data)

    @extend_schema(request=None, description="No new replicas are placed on the host.")
    @action(detail=True, methods=["post"])
    def cordon(self, request: Request, pk: str) -> Response:
        return self._lifecycle("cordon")

    @extend_schema(request=None, description="The host takes replicas again (ends a drain or evacuation).")
    @action(detail=True, methods=["post"])
    def uncordon(self, request: Request, pk: str) -> Response:
        return self._lifecycle("uncordon")

    @extend_schema(
        request=None,
        description="Cordon the host and roll its replicas onto other hosts (those with volumes stay).",
    )
    @action(detail=True, methods=["post"])
    def drain(self, request: Request, pk: str) -> Response:
        return self._lifecycle("drain")

    @extend_schema(
        request=None, description="Drain the host, then take it out of service (its pinned replicas stop)."
    )
    @action(detail=True, methods=["post"])
    def evacuate(self, request: Request, pk: str) -> Response:
        return self._lifecycle("evacuate")


# ---- apps ---------------------------------------------------------------------------
class AppViewSet(KeptList, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet):
    """Apps: create deploys release 1; PATCH or /deploy/ makes a new release from changes."""

    kept_group = "apps"
    queryset = App.objects.select_related("tenant", "current_release", "current_release__created_by")
    serializer_class = s.AppSerializer
    lookup_field = "name"

    def get_queryset(self) -> QuerySet[App]:
        # A fixed number of queries whatever the number of apps (test_query_counts.py): the apps
        # with their latest rollout's id, their replicas (one query), those rollouts (one query,
        # paginate_queryset/get_object). Only the columns the serializers read; orderings spelled
        # out (the models' default ones join the tenant table to sort by its slug).
        replicas = Replica.objects.select_related("host", "release").only(*s.REPLICA_SUMMARY_COLUMNS)
        latest = Rollout.objects.filter(app=OuterRef("pk")).order_by("-created_at", "-pk").values("pk")[:1]
        qs = (
            super()
            .get_queryset()
            .annotate(latest_rollout_id=Subquery(latest))
            .order_by("name")  # one tenant's apps: the same order as App.Meta's (tenant, name)
            .prefetch_related(Prefetch("replicas", queryset=replicas.order_by("app_id", "index")))
        )
        if state := self.request.query_params.get("state"):
            qs = qs.filter(state=state)
        return qs

    def paginate_queryset(self, queryset: QuerySet[App]) -> list[App] | None:
        page = super().paginate_queryset(queryset)
        return _with_latest_rollouts(page) if page is not None else None

    def get_object(self) -> App:
        return _with_latest_rollouts([super().get_object()])[0]

    def _respond(self, app: App, code: int = status.HTTP_200_OK) -> Response:
        fresh = _with_latest_rollouts([self.get_queryset().get(pk=app.pk)])[0]
        return Response(s.AppSerializer(fresh).data, status=code)

    @extend_schema(request=s.AppCreateSerializer)
    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = _valid(s.AppCreateSerializer, request.data)
        changes = serializer.spec_changes()
        name = changes.pop("name")
        app = deployments.create_app(self.actor, self.tenant, name, deployments.AppSpec(**changes))
        return self._respond(app, status.HTTP_201_CREATED)

    @extend_schema(request=s.UpdateSpecSerializer)
    def partial_update(self, request: Request, tenant_slug: str, name: str) -> Response:
        return self.deploy(request, tenant_slug, name)

    @extend_schema(request=s.UpdateSpecSerializer)
    @action(detail=True, methods=["post"])
    def deploy(self, request: Request, tenant_slug: str, name: str) -> Response:
        app = self.get_object()
        deployments.deploy(self.actor, app, **_valid(s.UpdateSpecSerializer, request.data).spec_changes())
        return self._respond(app)

    def perform_destroy(self, instance: App) -> None:
        deployments.delete_app(self.actor, instance)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, tenant_slug: str, name: str) -> Response:
        return self._respond(deployments.set_state(self.actor, self.get_object(), App.State.STOPPED))

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, tenant_slug: str, name: str) -> Response:
        return self._respond(deployments.set_state(self.actor, self.get_object(), App.State.RUNNING))

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, tenant_slug: str, name: str) -> Response:
        return self._respond(deployments.restart(self.actor, self.get_object()))

    @extend_schema(request=s.ScaleSerializer)
    @action(detail=True, methods=["post"])
    def scale(self, request: Request, tenant_slug: str, name: str) -> Response:
        app = self.get_object()
        deployments.scale(self.actor, app, _valid(s.ScaleSerializer, request.data).validated_data["replicas"])
        return self._respond(app)

    @extend_schema(request=s.RollbackSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, tenant_slug: str, name: str) -> Response:
        app = self.get_object()
        deployments.rollback(
            self.actor, app, _valid(s.RollbackSerializer, request.data).validated_data["version"]
        )
        return self._respond(app)

    @extend_schema(responses=s.ReleaseSerializer(many=True))
    @action(detail=True, methods=["get"])
    def releases(self, request: Request, tenant_slug: str, name: str) -> Response:
        app = self.get_object()
        rows = list(self.paginate_queryset(app.releases.select_related("created_by").order_by("-version")))
        older = Release.objects.filter(app=app, version=rows[-1].version - 1).first() if rows else None
        changes = release_changes(rows + ([older] if older else []))
        data = s.ReleaseSerializer(rows, many=True, context={"changes": changes}).data
        return self.get_paginated_response(data)


def _with_latest_rollouts(apps: list[App]) -> list[App]:
    """``apps`` (annotated with ``latest_rollout_id``) with their latest rollout attached, in one
    query, where AppSerializer reads it."""
    ids = [app.latest_rollout_id for app in apps if getattr(app, "latest_rollout_id", None)]
    found = (
        Rollout.objects.select_related("release", "previous").only(*s.ROLLOUT_COLUMNS).order_by().in_bulk(ids)
        if ids
        else {}
    )
    for app in apps:
        rollout = found.get(getattr(app, "latest_rollout_id", None))
        setattr(app, s.LATEST_ROLLOUT, [rollout] if rollout is not None else [])
    return apps


# ---- containers ---------------------------------------------------------------------
class ContainerViewSet(KeptList, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's containers (one per replica). Filter: ?app=web&state=running."""

    kept_group = "containers"
    queryset = Replica.objects.select_related("app", "app__tenant", "host", "release")
    serializer_class = s.ContainerSerializer
    tenant_field = "app__tenant"
    tenant_ordering = ("app__name", "index")  # Meta: app (its tenant, name), index

    def get_queryset(self) -> QuerySet[Replica]:
        qs = super().get_queryset()
        if self.action in ("list", "retrieve"):  # only the columns the serializer reads
            qs = qs.select_related(None).select_related("app", "host", "release").only(*s.CONTAINER_COLUMNS)
        if app := self.request.query_params.get("app"):
            qs = qs.filter(app__name=app)
        if state := self.request.query_params.get("state"):
            qs = qs.filter(state=state)
        return qs

    @extend_schema(
        parameters=[
            OpenApiParameter("tail", int, description="how many last lines (default 100)"),
            OpenApiParameter(
                "after",
                str,
                description="a line's cursor: the lines after it instead (each with its cursor; "
                "headers X-Log-Skipped and X-Log-Lost say what is missing)",
            ),
            OpenApiParameter(
                "download", bool, description="the whole log as a text file (up to 100,000 last lines)"
            ),
        ],
        responses=s.LogLineSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, tenant_slug: str, pk: str) -> Response | HttpResponse:

        after = request.query_params.get("after")
        if request.query_params.get("download") in ("1", "true"):
            replica = self.get_object()
            answer = logstream.container_log_lines(self.actor, replica, logstream.MAX_DOWNLOAD_LINES)
            text = logstream.as_text(answer["lines"])
            download = HttpResponse(text, content_type="text/plain; charset=utf-8")
            download["Content-Disposition"] = f'attachment; filename="{replica.container_name}.log"'
            return download
        try:
            tail = max(1, min(int(request.query_params.get("tail", "100")), 10000))
        except ValueError as exc:
            raise InvalidRequest("tail: give a number of lines") from exc
        if after is not None:
            answer = logstream.container_log_lines(self.actor, self.get_object(), tail, after)
            return Response(
                answer["lines"],
                headers={"X-Log-Skipped": str(answer["skipped"]), "X-Log-Lost": str(answer["lost"]).lower()},
            )
        lines = deployments.container_logs(self.actor, self.get_object(), tail)
        return Response(lines)

    @extend_schema(responses=dict)
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, tenant_slug: str, pk: str) -> Response:
        """CPU time, memory and pids now ({} when the container does not run)."""
        return Response(deployments.container_stats(self.actor, self.get_object()))

    # one container's buttons (dashboard: the container page); the app's own apply to all
    def _act(self, action_name: str) -> Response:
        replica = deployments.container_action(self.actor, self.get_object(), action_name)
        return Response(s.ContainerSerializer(self.get_queryset().get(pk=replica.pk)).data)

    @extend_schema(request=None, responses=s.ContainerSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, tenant_slug: str, pk: str) -> Response:
        """Stop this one container; it stays stopped until started (or the app is stopped/started)."""
        return self._act("stop")

    @extend_schema(request=None, responses=s.ContainerSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, tenant_slug: str, pk: str) -> Response:
        """Start this one container again after a stop."""
        return self._act("start")

    @extend_schema(request=None, responses=s.ContainerSerializer)
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, tenant_slug: str, pk: str) -> Response:
        """Restart this one container (its host's agent does it at once)."""
        return self._act("restart")


# ---- secrets ------------------------------------------------------------------------
class SecretViewSet(KeptList, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Secrets: names and dates only; a value goes in and never comes out."""

    kept_group = "secrets"
    queryset = Secret.objects.select_related("tenant").defer("ciphertext")
    serializer_class = s.SecretSerializer
    lookup_field = "name"
    tenant_ordering = ("name",)  # Meta: tenant, name
    list_select_related = ()

    def create(self, request: Request, tenant_slug: str) -> Response:
        data = _valid(s.SecretSerializer, request.data).validated_data
        secret = secrets.create_secret(self.actor, self.tenant, data["name"], data["value"])
        return Response(s.SecretSerializer(secret).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SecretValueSerializer)
    def update(self, request: Request, tenant_slug: str, name: str) -> Response:
        data = _valid(s.SecretValueSerializer, request.data).validated_data
        secret = secrets.update_secret(self.actor, self.get_object(), data["value"])
        return Response(s.SecretSerializer(secret).data)

    def destroy(self, request: Request, tenant_slug: str, name: str) -> Response:
        secrets.delete_secret(self.actor, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---- images -------------------------------------------------------------------------
class ImageViewSet(KeptList, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Images the tenant may run: base images and its own uploads (multipart: name, archive)."""

    kept_group = "images"
    queryset = Image.objects.all()
    serializer_class = s.ImageSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Image]:
        if getattr(self, "swagger_fake_view", False):
            return Image.objects.none()
        return images.available_images(self.actor, self.tenant)

    @extend_schema(request={"multipart/form-data": s.ImageUploadSerializer}, responses=s.ImageSerializer)
    def create(self, request: Request, tenant_slug: str) -> Response:
        data = _valid(s.ImageUploadSerializer, request.data).validated_data
        image = images.upload_image(self.actor, self.tenant, data["name"], data["archive"])
        return Response(s.ImageSerializer(image).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        images.delete_image(self.actor, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class BaseImageViewSet(
    AdminViewSetMixin, mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Base images every tenant may run (admins register them; the hosts must hold them)."""

    queryset = Image.objects.filter(tenant=None)
    serializer_class = s.ImageSerializer

    @extend_schema(request=s.BaseImageSerializer)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(s.BaseImageSerializer, request.data).validated_data
        image = images.add_base_image(self.actor, data["reference"])
        return Response(s.ImageSerializer(image).data, status=status.HTTP_201_CREATED)


# ---- usage and prices -----------------------------------------------------------------
class UsageViewSet(TenantScopedViewSet):
    """Hourly usage of the tenant with costs, and each app's hourly CPU and memory in ``apps``:
    ?since=&until= (ISO 8601; default the last 24 hours)."""

    serializer_class = s.UsageReportSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO 8601; default: 24 hours ago"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO 8601; default: now"),
        ],
        responses=s.UsageReportSerializer,
    )
    def retrieve(self, request: Request, tenant_slug: str) -> Response:
        since = _when(request.query_params.get("since"), "since")
        until = _when(request.query_params.get("until"), "until")
        return Response(usage.report(self.actor, self.tenant, since, until))


def _when(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:  # well formed but no such time (month 13)
        value = None
    if value is None:
        raise InvalidRequest(f"{name}: give an ISO 8601 time such as 2026-01-02T03:00:00Z")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class PricesViewSet(ActorMixin, viewsets.GenericViewSet):
    """Prices of usage: everyone signed in reads them, admins change them."""

    serializer_class = s.PricesSerializer

    def retrieve(self, request: Request) -> Response:
        return Response(s.PricesSerializer(Prices.current()).data)

    def partial_update(self, request: Request) -> Response:
        data = _valid(s.PricesSerializer, request.data, partial=True).validated_data
        return Response(s.PricesSerializer(usage.set_prices(self.actor, **data)).data)


# ---- volumes ------------------------------------------------------------------------
class VolumeViewSet(KeptList, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Named volumes of the tenant (size-capped; counted against the volumes and disk quota)."""

    kept_group = "volumes"
    queryset = Volume.objects.select_related("tenant")
    serializer_class = s.VolumeSerializer
    tenant_ordering = ("name",)  # Meta: tenant, name
    list_select_related = ()

    def create(self, request: Request, tenant_slug: str) -> Response:
        data = _valid(s.VolumeSerializer, request.data).validated_data
        volume = volumes.create_volume(self.actor, self.tenant, data["name"], data["size_bytes"])
        return Response(s.VolumeSerializer(volume).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, tenant_slug: str, pk: str) -> Response:
        volumes.delete_volume(self.actor, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
