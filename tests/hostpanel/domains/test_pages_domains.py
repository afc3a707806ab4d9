"""The app page's web addresses and custom domains in the dashboard (Django's test client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from hostpanel.deployments.models import App
from hostpanel.domains.models import Domain
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.domains.helpers import TableResolver, dns_server
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def web(make_app: Any, tenant: Tenant) -> App:
    return make_app(tenant, "web", http_port=8080)


@pytest.fixture
def dev(tenant: Tenant, member: Any) -> Client:
    return signed_in(member(tenant, Role.DEVELOPER))


@pytest.fixture
def dns(settings: Any) -> Iterator[TableResolver]:
    with dns_server() as (resolver, address):
        settings.HOSTPANEL_DOMAINS_NAMESERVERS = [address]
        settings.HOSTPANEL_DOMAINS_CHECK_TIMEOUT = 2.0
        yield resolver


ACTION = "/t/acme/apps/web/domains/{}/"


def test_the_app_page_shows_its_url_and_adds_a_domain_with_instructions(dev: Client, web: App) -> None:
    page = dev.get("/t/acme/apps/web/").content.decode()
    assert 'id="app-url" href="http://web-acme.localhost:8080/"' in page
    assert "No custom domains." in page and 'id="add-domain"' in page
    r = dev.post(ACTION.format("add"), {"name": "Shop.Example.COM"}, follow=True)
    assert r.redirect_chain[-1][0] == "/t/acme/apps/web/#app-web"
    page = r.content.decode()
    domain = Domain.objects.get()
    assert domain.name == "shop.example.com"
    assert "shop.example.com added" in page and "waiting for proof" in page
    assert f"hostpanel-verify={domain.token}" in page and "_hostpanel-challenge.shop.example.com" in page


def test_bad_names_and_failed_proofs_say_why_and_change_nothing(
    dev: Client, web: App, dns: TableResolver
) -> None:
    page = dev.post(ACTION.format("add"), {"name": "10.0.0.1"}, follow=True).content.decode()
    assert "IP address" in page and not Domain.objects.exists()
    dev.post(ACTION.format("add"), {"name": "shop.example.com"})
    page = dev.post(ACTION.format("verify"), {"domain": "shop.example.com"}, follow=True).content.decode()
    assert "is not verified yet" in page and "add a TXT record" in page
    assert not Domain.objects.get().verified


def test_verify_then_remove(dev: Client, web: App, dns: TableResolver, on_commit: Any) -> None:
    dev.post(ACTION.format("add"), {"name": "shop.example.com"})
    token = Domain.objects.get().token
    dns.records[("_hostpanel-challenge.shop.example.com", "TXT")] = [f"hostpanel-verify={token}"]
    page = dev.post(ACTION.format("verify"), {"domain": "shop.example.com"}, follow=True).content.decode()
    assert "is verified and routed to web" in page and 'data-verified="yes"' in page
    assert 'href="https://shop.example.com:8443/"' in page
    page = dev.post(ACTION.format("remove"), {"domain": "shop.example.com"}, follow=True).content.decode()
    assert "removed" in page and not Domain.objects.exists()


def test_viewers_see_no_forms_and_cannot_post(tenant: Tenant, web: App, member: Any) -> None:
    viewer = signed_in(member(tenant, Role.VIEWER))
    page = viewer.get("/t/acme/apps/web/").content.decode()
    assert "Web addresses" in page and 'id="add-domain"' not in page
    assert viewer.post(ACTION.format("add"), {"name": "shop.example.com"}).status_code == 403
    assert not Domain.objects.exists()


def test_another_tenant_gets_404s(web: App, member: Any, make_app: Any, dev: Client) -> None:
    dev.post(ACTION.format("add"), {"name": "shop.example.com"})
    rival = TenantFactory(slug="rival")
    make_app(rival, "web", http_port=80)
    outsider = signed_in(member(rival, Role.OWNER))
    assert outsider.post(ACTION.format("remove"), {"domain": "shop.example.com"}).status_code == 404
    assert outsider.post(ACTION.format("add"), {"name": "x.example.com"}).status_code == 404
    # through its own app, acme's domain is not there either
    r = outsider.post("/t/rival/apps/web/domains/remove/", {"domain": "shop.example.com"})
    assert r.status_code == 404 and Domain.objects.count() == 1
    assert dev.post(ACTION.format("nope"), {}).status_code == 404
    assert dev.get(ACTION.format("add")).status_code == 405
