"""The API's routes come first in hostpanel/urls.py (Django tries routes in order, the dashboard's
are many): that is only a speed-up while no other route would take a path under api/v1/."""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from hostpanel.api import urls as api_urls
from hostpanel.api.urls import router

SLUGS = {"tenant_slug": "acme", "app_name": "web"}


def api_paths() -> list[str]:
    """A path of every API route: each resource's list, an object and an action on it."""
    paths = []
    for prefix, _, _ in router.registry:
        base = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: SLUGS[m.group(1)], prefix)
        paths += [f"api/v1/{base}/", f"api/v1/{base}/x/", f"api/v1/{base}/x/deploy/", f"api/v1/{base}.json"]
    for pattern in api_urls.urlpatterns:
        if isinstance(pattern, URLPattern):
            paths.append("api/v1/" + str(pattern.pattern).replace("<str:tenant_slug>", "acme"))
    return [*paths, "api/v1/"]


def test_the_api_is_tried_first_and_no_other_route_takes_its_paths() -> None:
    patterns = get_resolver().url_patterns
    assert isinstance(patterns[0], URLResolver) and str(patterns[0].pattern) == "api/v1/"
    for pattern in patterns[1:]:
        for path in api_paths():
            try:
                match = pattern.resolve(path)
            except Resolver404:
                match = None
            assert match is None, f"{pattern} takes {path}"


def test_the_pages_still_resolve_to_the_dashboard() -> None:
    assert resolve("/").view_name == "dashboard:home"
    assert resolve("/t/acme/apps/").view_name == "dashboard:apps"
    assert resolve("/api/v1/tenants/acme/apps/").view_name == "app-list"
    assert resolve("/healthz").view_name == "healthz"
