"""Routes of ``/api/v1/``: tenants, and per tenant ``/tenants/<slug>/<resource>/``."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from hostpanel.api import views
from hostpanel.api.builds import BuildViewSet
from hostpanel.api.domains import DomainViewSet, TLSViewSet
from hostpanel.api.networks import NetworkViewSet
from hostpanel.api.stacks import StackViewSet

T = r"tenants/(?P<tenant_slug>[a-z0-9][a-z0-9_-]*)"

router = DefaultRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("hosts", views.HostViewSet, basename="host")
router.register("audit", views.GlobalAuditViewSet, basename="global-audit")
router.register("images", views.BaseImageViewSet, basename="base-image")
router.register(f"{T}/members", views.MemberViewSet, basename="member")
router.register(f"{T}/tokens", views.TokenViewSet, basename="token")
router.register(f"{T}/apps", views.AppViewSet, basename="app")
router.register(f"{T}/containers", views.ContainerViewSet, basename="container")
router.register(f"{T}/secrets", views.SecretViewSet, basename="secret")
router.register(f"{T}/audit", views.AuditViewSet, basename="audit")
router.register(f"{T}/images", views.ImageViewSet, basename="image")
router.register(f"{T}/volumes", views.VolumeViewSet, basename="volume")
router.register(f"{T}/builds", BuildViewSet, basename="build")
router.register(f"{T}/stacks", StackViewSet, basename="stack")  # compose stacks (issue 14, stacks)
router.register(f"{T}/networks", NetworkViewSet, basename="network")  # tenant networks (issue 14)
# custom domains of an app (issue 12, domains)
router.register(f"{T}/apps/(?P<app_name>[a-z0-9][a-z0-9-]*)/domains", DomainViewSet, basename="domain")

quota = views.QuotaViewSet.as_view({"get": "retrieve", "patch": "partial_update", "put": "partial_update"})
usage = views.UsageViewSet.as_view({"get": "retrieve"})
prices = views.PricesViewSet.as_view({"get": "retrieve", "patch": "partial_update"})
tls = TLSViewSet.as_view({"get": "retrieve"})  # the proxy's TLS mode (issue 12, domains)
tls_check = TLSViewSet.as_view({"post": "check"})

urlpatterns = [
    path("tenants/<str:tenant_slug>/quota/", quota, name="quota"),
    path("tenants/<str:tenant_slug>/usage/", usage, name="usage"),
    path("prices/", prices, name="prices"),
    path("tls/", tls, name="tls"),
    path("tls/check/", tls_check, name="tls-check"),
    path("", include(router.urls)),
]
