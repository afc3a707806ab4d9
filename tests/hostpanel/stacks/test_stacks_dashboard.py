"""The stacks pages through Django's test client: list, new stack (paste, refused file), the stack's
page and its live part, redeploy, down; viewers look only; another tenant's stack is a 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from hostpanel.audit.services import Actor
from hostpanel.deployments.models import App
from hostpanel.hosts.models import Host
from hostpanel.stacks import services as stacks
from hostpanel.stacks.models import Stack
from hostpanel.stacks.sources import pasted
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db
COMPOSE = (
    "services:\n  kv:\n    image: busybox:latest\n  web:\n    image: busybox:latest\n    depends_on: [kv]\n"
)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_pasted_file_makes_the_stack_and_its_page_shows_every_service(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    assert 'id="stack-form"' in client.get("/t/acme/stacks/").content.decode()
    r = client.post("/t/acme/stacks/", {"name": "shop", "compose": COMPOSE, "env": "A=1"})
    assert r.status_code == 302 and r["Location"] == "/t/acme/stacks/shop/"
    assert Stack.objects.get().env == {"A": "1"}
    page = client.get("/t/acme/stacks/shop/").content.decode()
    assert 'data-service="kv"' in page and 'data-service="web"' in page
    assert 'href="/t/acme/apps/web/"' in page  # each service links to its app (its logs)
    live = client.get("/t/acme/stacks/shop/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="stack-services"' in live and "<html" not in live
    r = client.post("/t/acme/stacks/shop/redeploy/", {"compose": COMPOSE.replace("  web:", "  api:")})
    assert r.status_code == 302
    assert set(App.objects.values_list("name", flat=True)) == {"kv", "api"}
    assert client.post("/t/acme/stacks/shop/down/", {}).status_code == 302
    assert not Stack.objects.exists() and not App.objects.exists()


def test_a_refused_file_shows_the_line_and_makes_nothing(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    r = client.post(
        "/t/acme/stacks/", {"name": "shop", "compose": "services:\n  web:\n    privileged: true\n"}
    )
    assert r.status_code == 400
    assert "line 3" in r.content.decode() and "privileged" in r.content.decode()
    assert not Stack.objects.exists() and not App.objects.exists()


def test_viewers_look_and_other_tenants_get_404(
    tenant: Tenant, host: Host, member: Callable[..., Any]
) -> None:
    owner = member(tenant, Role.OWNER)
    stacks.create_stack(Actor(user=owner), tenant, "shop", pasted(COMPOSE))
    viewer = signed_in(member(tenant, Role.VIEWER))
    page = viewer.get("/t/acme/stacks/shop/").content.decode()
    assert 'data-service="kv"' in page and 'id="stack-down"' not in page
    assert viewer.post("/t/acme/stacks/shop/down/", {}).status_code == 403
    assert viewer.post("/t/acme/stacks/", {"name": "x", "compose": COMPOSE}).status_code == 403
    other = TenantFactory(slug="other")
    outsider = signed_in(member(other, Role.OWNER))
    assert outsider.get("/t/acme/stacks/shop/").status_code == 404
    assert outsider.get("/t/other/stacks/shop/").status_code == 404
    assert outsider.post("/t/other/stacks/shop/down/", {}).status_code == 404
    assert Stack.objects.filter(name="shop").exists()
