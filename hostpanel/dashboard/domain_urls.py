"""Dashboard routes of custom domains, below ``/t/<tenant>/apps/<app>/domains/``."""

from __future__ import annotations

from django.urls import path

from hostpanel.dashboard.views.domains import domain_action

app_name = "domains"

urlpatterns = [path("<str:action>/", domain_action, name="action")]
