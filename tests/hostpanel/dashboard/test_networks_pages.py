"""The networks pages: list, create, detail (member apps), delete; choosing networks on the app form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from hostpanel.deployments.models import App
from hostpanel.networks.models import Network
from hostpanel.networks.services import default_network
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_create_show_and_delete_a_network(tenant: Tenant, host: Any, member: Callable[..., Any]) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    page = client.get("/t/acme/networks/")
    assert page.status_code == 200 and 'id="network-form"' in page.content.decode()
    assert "default" in page.content.decode()  # every tenant has its default network
    response = client.post("/t/acme/networks/create/", {"name": "back"})
    assert response.status_code == 302 and response["Location"] == "/t/acme/networks/back/"
    detail = client.get("/t/acme/networks/back/").content.decode()
    assert "No app is on this network" in detail and Network.objects.get(name="back").subnet in detail
    bad = client.post("/t/acme/networks/create/", {"name": "Bad Name"})
    assert bad.status_code == 400 and 'role="alert"' in bad.content.decode()
    assert not Network.objects.filter(name="Bad Name").exists()
    assert client.post("/t/acme/networks/back/delete/").status_code == 302
    assert not Network.objects.filter(name="back").exists()


def test_the_deploy_form_joins_the_default_network_and_names_aliases(
    tenant: Tenant, host: Any, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    form = client.get("/t/acme/deploy/").content.decode()
    assert 'name="networks"' in form and "\ndefault</textarea>" in form
    fields = {
        "name": "db",
        "image": "busybox:latest",
        "network": "none",
        "replicas": "1",
        "cpu_millis": "100",
        "memory_mib": "32",
        "pids": "64",
        "restart_policy": "always",
    }
    response = client.post("/t/acme/deploy/", fields | {"networks": "default: database pg"})
    assert response.status_code == 302, response.content.decode()
    release = App.objects.get(name="db").current_release
    assert release.networks == [{"name": "default", "aliases": ["database", "pg"]}]
    detail = client.get("/t/acme/networks/default/").content.decode()
    assert "db, database, pg" in detail
    # a network the tenant lacks is refused next to the field, and nothing is made
    response = client.post("/t/acme/deploy/", fields | {"name": "web", "networks": "nope"})
    assert response.status_code == 400
    assert 'data-error-for="networks"' in response.content.decode()
    assert not App.objects.filter(name="web").exists()
    # the edit form shows what the app joins
    edit = client.get("/t/acme/apps/db/edit/").content.decode()
    assert "\ndefault: database pg</textarea>" in edit
    # a used network is not deleted: the page says why
    page = client.post("/t/acme/networks/default/delete/", follow=True).content.decode()
    assert "used by app(s) db" in page and Network.objects.filter(name="default").exists()


def test_viewers_look_and_outsiders_get_404(tenant: Tenant, host: Any, member: Callable[..., Any]) -> None:
    viewer = signed_in(member(tenant, Role.VIEWER))
    assert 'id="network-form"' not in viewer.get("/t/acme/networks/").content.decode()
    assert viewer.post("/t/acme/networks/create/", {"name": "x"}).status_code == 403
    assert viewer.post("/t/acme/networks/default/delete/").status_code == 403
    assert not Network.objects.filter(name="x").exists() and Network.objects.filter(name="default").exists()
    other = TenantFactory(slug="other")
    default_network(other)
    outsider = signed_in(member(other, Role.OWNER))
    assert outsider.get("/t/acme/networks/").status_code == 404
    assert outsider.get("/t/acme/networks/default/").status_code == 404
    assert outsider.post("/t/acme/networks/default/delete/").status_code == 404
    assert outsider.get("/t/other/networks/nope/").status_code == 404
