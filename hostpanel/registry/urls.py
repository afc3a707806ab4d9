"""/v2/ routes: one dispatcher, since repository names contain slashes."""

from __future__ import annotations

from django.urls import re_path

from hostpanel.registry.views import v2

urlpatterns = [re_path(r"^(?P<path>.*)$", v2, name="registry-v2")]
