"""URL routes of the panel. `/` is the dashboard (hostpanel/dashboard/urls.py)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from hostpanel.views import healthz

urlpatterns = [
    path("", include("hostpanel.dashboard.urls")),  # the pages: /, /login/, /t/<tenant>/..., /staff/
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("hostpanel.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("v2/", include("hostpanel.registry.urls")),
    path(
        "edge/", include("hostpanel.edge.urls")
    ),  # Caddy's on-demand TLS "ask" endpoint  # the OCI Distribution registry
    # Static files (admin CSS, the Swagger UI assets of drf-spectacular-sidecar) straight from the
    # apps' static dirs: no CDN and no separate web server needed on a single machine.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
