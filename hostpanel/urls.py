"""URL routes of the panel. `/` is the dashboard (hostpanel/dashboard/urls.py)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from hostpanel.domains.views import well_known
from hostpanel.views import healthz

urlpatterns = [
    # The API first: Django tries the routes in order, and the dashboard's are many; none of the
    # others matches a path under api/v1/ (test_urls.py), so the order changes no answer.
    path("api/v1/", include("hostpanel.api.urls")),
    # An app's custom domains in the dashboard (issue 12, domains); before the dashboard's routes.
    path("t/<slug:slug>/apps/<slug:name>/domains/", include("hostpanel.dashboard.domain_urls")),
    path("", include("hostpanel.dashboard.urls")),  # the pages: /, /login/, /t/<tenant>/..., /staff/
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("v2/", include("hostpanel.registry.urls")),  # the OCI Distribution registry
    path("edge/", include("hostpanel.edge.urls")),  # Caddy's on-demand TLS "ask" endpoint
    path("internal/v1/", include("hostpanel.hosts.internal")),  # host agents (issue 15, enrollment)
    path("internal/v1/", include("hostpanel.deployments.internal")),  # sealed secrets (issue 15)
    path("internal/v1/", include("hostpanel.edge.internal")),  # the routing table (issue 15)
    path("internal/v1/", include("hostpanel.usage.internal")),  # the agents' usage reports
    path("internal/v1/", include("hostpanel.terminal.internal")),  # their exec sessions' audit entries
    path("internal/v1/", include("hostpanel.builds.internal")),  # the agents' builds
    path("internal/v1/", include("hostpanel.volumes.internal")),  # their deleted volumes
    # Custom domains (issue 12): the HTTP ownership token, reached through the edge proxy.
    path(".well-known/hostpanel/<str:token>", well_known, name="domain-well-known"),
    # Static files (admin CSS, the Swagger UI assets of drf-spectacular-sidecar) straight from the
    # apps' static dirs: no CDN and no separate web server needed on a single machine.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
