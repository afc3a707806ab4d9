"""URL routes of the panel. `/` redirects to the health page until the dashboard exists."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from hostpanel.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(url="/healthz", permanent=False), name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
