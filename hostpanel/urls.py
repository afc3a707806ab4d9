"""URL routes of the panel. `/` redirects to the health page until the dashboard exists."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hostpanel.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(url="/healthz", permanent=False), name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("hostpanel.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    # Static files (admin CSS, the Swagger UI assets of drf-spectacular-sidecar) straight from the
    # apps' static dirs: no CDN and no separate web server needed on a single machine.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
