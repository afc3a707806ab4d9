"""The proxy's on-demand TLS ``ask`` endpoint says yes to a custom domain only while it is verified."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from hostpanel.audit.services import Actor
from hostpanel.deployments.models import App
from hostpanel.domains import services
from hostpanel.domains.models import Domain
from hostpanel.edge.table import forget_served_hostnames
from hostpanel.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def asks(name: str) -> int:
    return int(Client().get("/edge/ask", {"domain": name}).status_code)


@pytest.fixture
def web(make_app: Any, tenant: Tenant) -> App:
    return make_app(tenant, "web", http_port=8080)


def test_yes_only_while_verified(web: App, admin_actor: Actor, on_commit: Any) -> None:
    domain = services.add_domain(admin_actor, web, "www.example.com")
    assert asks("www.example.com") == 404
    Domain.objects.update(verified_at=timezone.now())
    forget_served_hostnames()  # the ask answers are cached for 2 s
    assert asks("www.example.com") == 200 and asks("WWW.Example.com.") == 200
    assert asks("other.example.com") == 404 and asks("example.com") == 404
    with on_commit():
        services.remove_domain(admin_actor, Domain.objects.get(pk=domain.pk))
    assert asks("www.example.com") == 404


def test_a_verified_wildcard_covers_one_label_and_nothing_else(web: App, admin_actor: Actor) -> None:
    services.add_domain(admin_actor, web, "*.example.com")
    assert asks("shop.example.com") == 404
    Domain.objects.update(verified_at=timezone.now())
    forget_served_hostnames()  # the ask answers are cached for 2 s
    assert asks("shop.example.com") == 200
    for name in ("*.example.com", "a.shop.example.com", "example.com", "shop.example.com.evil.test"):
        assert asks(name) == 404, name


def test_a_domain_of_an_app_without_an_http_port_is_not_served(
    make_app: Any, tenant: Tenant, admin_actor: Actor
) -> None:
    worker = make_app(tenant, "worker")
    services.add_domain(admin_actor, worker, "jobs.example.com")
    Domain.objects.update(verified_at=timezone.now())
    forget_served_hostnames()  # the ask answers are cached for 2 s
    assert asks("jobs.example.com") == 404
