"""``/api/v1/tenants/<slug>/apps/<app>/domains/``: add, list, verify, check the certificate of, remove."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api.base import AdminViewSetMixin, ModelSerializer, StrictSerializer, TenantScopedViewSet
from hostpanel.deployments.models import App
from hostpanel.domains import services
from hostpanel.domains.models import Domain
from hostpanel.domains.names import BadName, display, normalise
from hostpanel.errors import NotFound


class DomainSerializer(ModelSerializer):
    app = serializers.CharField(source="app.name", read_only=True)
    display_name = serializers.SerializerMethodField()
    verified = serializers.BooleanField(read_only=True)
    wildcard = serializers.BooleanField(source="is_wildcard", read_only=True)
    verification = serializers.SerializerMethodField()
    certificate = serializers.SerializerMethodField()

    class Meta:
        model = Domain
        fields = [
            "name",
            "display_name",
            "app",
            "wildcard",
            "verified",
            "verified_at",
            "verified_method",
            "verification",
            "certificate",
            "created_at",
        ]

    def get_display_name(self, domain: Domain) -> str:
        return display(domain.name)

    def get_verification(self, domain: Domain) -> dict[str, Any] | None:
        """What to publish to prove ownership (None once verified)."""
        if domain.verified:
            return None
        addresses = getattr(self, "_proxy_addresses", None)
        if addresses is None:  # once per list: the same hosts answer for every domain
            addresses = self._proxy_addresses = services.proxy_addresses()
        return services.instructions(domain, addresses)

    def get_certificate(self, domain: Domain) -> dict[str, Any]:
        return {
            "state": domain.cert_state,
            "issuer": domain.cert_issuer,
            "expires_at": domain.cert_expires_at,
            "checked_at": domain.cert_checked_at,
            "error": domain.cert_error,
        }


class DomainCreateSerializer(StrictSerializer):
    name = serializers.CharField(
        max_length=300, help_text="www.example.com; IDNA names and a trailing dot are normalised"
    )


class VerifySerializer(StrictSerializer):
    method = serializers.ChoiceField(
        choices=Domain.Method.choices, required=False, help_text="dns or http; both are tried when left out"
    )


class DomainViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Custom domains of one app. Routed only once verified (a DNS TXT record or the HTTP token)."""

    queryset = Domain.objects.select_related("app", "tenant")
    serializer_class = DomainSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    action_roles = {"certificate": "viewer"}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        app = App.objects.filter(tenant=self.tenant, name=kwargs["app_name"]).first()
        if app is None:
            raise NotFound(f"no app {kwargs['app_name']!r}")
        self.app = app

    def base_queryset(self) -> QuerySet[Domain]:
        return super().base_queryset().filter(app__name=self.kwargs.get("app_name"))

    def get_object(self) -> Domain:
        raw = self.kwargs["name"]
        try:
            name = normalise(raw)
        except BadName as exc:
            raise NotFound(f"no domain {raw!r} on app {self.app.name!r}") from exc
        domain = self.get_queryset().filter(name=name).first()
        if domain is None:
            raise NotFound(f"no domain {raw!r} on app {self.app.name!r}")
        return domain

    @extend_schema(request=DomainCreateSerializer, responses=DomainSerializer)
    def create(self, request: Request, tenant_slug: str, app_name: str) -> Response:
        serializer = DomainCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        domain = services.add_domain(self.actor, self.app, serializer.validated_data["name"])
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, tenant_slug: str, app_name: str, name: str) -> Response:
        services.remove_domain(self.actor, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=VerifySerializer, responses=DomainSerializer)
    @action(detail=True, methods=["post"])
    def verify(self, request: Request, tenant_slug: str, app_name: str, name: str) -> Response:
        serializer = VerifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        domain = services.verify_domain(
            self.actor, self.get_object(), serializer.validated_data.get("method")
        )
        return Response(DomainSerializer(domain).data)

    @extend_schema(request=None, responses=DomainSerializer)
    @action(detail=True, methods=["post"])
    def certificate(self, request: Request, tenant_slug: str, app_name: str, name: str) -> Response:
        """Look at the certificate the proxy presents now and record its state and expiry."""
        domain = services.check_certificate(self.actor, self.get_object())
        return Response(DomainSerializer(domain).data)


class TLSCheckSerializer(StrictSerializer):
    mode = serializers.CharField(max_length=40, help_text="internal or acme: may this host use it?")


class TLSStatusSerializer(serializers.Serializer):
    mode = serializers.CharField()
    issuer = serializers.DictField(allow_null=True)
    root_certificate = serializers.CharField(
        allow_null=True, help_text="internal CA's root: trust it in a browser"
    )
    problems = serializers.ListField(child=serializers.CharField())


class TLSViewSet(AdminViewSetMixin, viewsets.GenericViewSet):
    """Admins: the TLS mode (HOSTPANEL_TLS), its issuer and root; ``check/`` asks about another mode."""

    serializer_class = TLSStatusSerializer

    def retrieve(self, request: Request) -> Response:
        return Response(services.tls_status(self.actor))

    @extend_schema(request=TLSCheckSerializer, responses=TLSStatusSerializer)
    def check(self, request: Request) -> Response:
        serializer = TLSCheckSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(services.tls_status(self.actor, serializer.validated_data["mode"]))
