"""Custom domains through the API: normalised, one owner, proven before routed, removed at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import App
from hostpanel.domains import proofs, services
from hostpanel.domains.hostnames import app_hostnames
from hostpanel.domains.models import Domain
from hostpanel.edge.table import claimed_hostnames, is_served
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.domains.helpers import TableResolver, dns_server
from tests.hostpanel.factories import TenantFactory
from tests.stack import free_port

pytestmark = pytest.mark.django_db


def routed(sent_routes: list[tuple[str, Any]]) -> list[list[str]]:
    """The hostnames of each routing table sent to the hosts so far."""
    return [sorted(table["routes"]) for _, table in sent_routes]


def serve(app: App) -> None:
    """Make the app's replica take requests (running and ready, its http_port published on host h1)."""
    port = app.current_release.http_port if app.current_release else None
    app.replicas.update(
        state="running", ready=True, ports=[{"container_port": port, "protocol": "tcp", "host_port": 30001}]
    )
    Host.objects.update(address="127.0.0.1")


@pytest.fixture
def dns(settings: Any) -> Iterator[TableResolver]:
    with dns_server() as (resolver, address):
        settings.HOSTPANEL_DOMAINS_NAMESERVERS = [address]
        settings.HOSTPANEL_DOMAINS_CHECK_TIMEOUT = 2.0
        yield resolver


@pytest.fixture
def web(make_app: Any, tenant: Tenant) -> App:
    return make_app(tenant, "web", http_port=8080)


@pytest.fixture
def dev(tenant: Tenant, member: Any) -> Any:
    return member(tenant, Role.DEVELOPER)


def url(tenant: Tenant, app: str = "web", suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/apps/{app}/domains/{suffix}"


def test_a_domain_is_stored_normalised_and_says_how_to_prove_it(
    api: Any, dev: Any, tenant: Tenant, web: App
) -> None:
    r = api(dev).post(url(tenant), {"name": "Bücher.Example.COM."}, format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["name"] == "xn--bcher-kva.example.com" and body["display_name"] == "bücher.example.com"
    assert body["verified"] is False and body["certificate"]["state"] == "none"
    token = Domain.objects.get().token
    assert body["verification"]["dns"] == {
        "type": "TXT",
        "name": "_hostpanel-challenge.xn--bcher-kva.example.com",
        "value": f"hostpanel-verify={token}",
    }
    assert body["verification"]["http"]["url"].endswith(f"/.well-known/hostpanel/{token}")
    assert api(dev).get(url(tenant, suffix="BÜCHER.example.com/")).json()["name"] == body["name"]
    assert AuditLog.objects.filter(action="domain.add", result="ok").exists()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("1.2.3.4", "IP address"),
        ("::1", "IP address"),
        ("not a name", "not a valid domain name"),
        ("a_b.example.com", "not a valid domain name"),
        ("localhost", "single label"),
        ("web-acme.localhost", "automatic hostnames"),
        ("other-acme.localhost", "automatic hostnames"),
        ("x.routes.hostpanel", "reserved"),
        ("www.*.example.com", "first label"),
    ],
)
def test_a_bad_name_is_a_400_that_changes_nothing(
    api: Any, dev: Any, tenant: Tenant, web: App, name: str, says: str
) -> None:
    r = api(dev).post(url(tenant), {"name": name}, format="json")
    assert r.status_code == 400, r.json()
    assert says in r.json()["error"]["message"]
    assert not Domain.objects.exists()


def test_the_panels_own_hostname_cannot_be_claimed(
    api: Any, dev: Any, tenant: Tenant, web: App, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "panel.example.net"]
    r = api(dev).post(url(tenant), {"name": "PANEL.example.net"}, format="json")
    assert r.status_code == 400 and "reserved" in r.json()["error"]["message"]


def test_another_tenant_asking_for_a_held_domain_gets_a_409_that_names_nobody(
    api: Any, dev: Any, tenant: Tenant, web: App, make_app: Any, member: Any
) -> None:
    assert api(dev).post(url(tenant), {"name": "www.example.com"}, format="json").status_code == 201
    rival = TenantFactory(slug="rival")
    make_app(rival, "site", http_port=80)
    r = api(member(rival, Role.OWNER)).post(url(rival, "site"), {"name": "WWW.example.com."}, format="json")
    assert r.status_code == 409
    message = str(r.json())
    assert "acme" not in message and "web" not in message and "another account" in message
    assert Domain.objects.get().tenant == tenant


def test_one_domain_per_app_within_a_tenant_too(
    api: Any, dev: Any, tenant: Tenant, web: App, make_app: Any
) -> None:
    make_app(tenant, "api", http_port=80)
    assert api(dev).post(url(tenant), {"name": "www.example.com"}, format="json").status_code == 201
    r = api(dev).post(url(tenant, "api"), {"name": "www.example.com"}, format="json")
    assert r.status_code == 409 and "'web'" in r.json()["error"]["message"]


def test_wildcards_are_for_admins_and_guard_their_names(
    api: Any, dev: Any, tenant: Tenant, web: App, admin_user: Any, make_app: Any, member: Any
) -> None:
    r = api(dev).post(url(tenant), {"name": "*.example.com"}, format="json")
    assert r.status_code == 403 and not Domain.objects.exists()
    assert api(admin_user).post(url(tenant), {"name": "*.example.com"}, format="json").status_code == 201
    rival = TenantFactory(slug="rival")
    make_app(rival, "site", http_port=80)
    r = api(member(rival, Role.OWNER)).post(url(rival, "site"), {"name": "shop.example.com"}, format="json")
    assert r.status_code == 409 and "acme" not in str(r.json())
    # the wildcard's own tenant may still give one name to another of its apps
    assert api(dev).post(url(tenant), {"name": "shop.example.com"}, format="json").status_code == 201


def test_an_admin_wildcard_over_other_tenants_names_is_refused(
    api: Any, dev: Any, tenant: Tenant, web: App, admin_user: Any, make_app: Any
) -> None:
    rival = TenantFactory(slug="rival")
    make_app(rival, "site", http_port=80)
    assert (
        api(admin_user).post(url(rival, "site"), {"name": "a.example.com"}, format="json").status_code == 201
    )
    r = api(admin_user).post(url(tenant), {"name": "*.example.com"}, format="json")
    assert r.status_code == 409 and Domain.objects.count() == 1


def test_another_tenants_app_and_domains_are_404s(
    api: Any, dev: Any, tenant: Tenant, web: App, make_app: Any, member: Any
) -> None:
    api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    rival = TenantFactory(slug="rival")
    outsider = member(rival, Role.OWNER)
    c = api(outsider)
    assert c.get(url(tenant)).status_code == 404
    assert c.post(url(tenant), {"name": "x.example.com"}, format="json").status_code == 404
    assert c.delete(url(tenant, suffix="www.example.com/")).status_code == 404
    assert c.post(url(tenant, suffix="www.example.com/verify/"), {}, format="json").status_code == 404
    # the rival's own app with the same name does not see acme's domain either
    make_app(rival, "web", http_port=80)
    assert c.get(url(rival)).json()["results"] == []
    assert c.get(url(rival, suffix="www.example.com/")).status_code == 404
    assert Domain.objects.count() == 1


def test_a_viewer_reads_but_cannot_add(api: Any, tenant: Tenant, web: App, member: Any) -> None:
    viewer = api(member(tenant, Role.VIEWER))
    assert viewer.get(url(tenant)).status_code == 200
    assert viewer.post(url(tenant), {"name": "www.example.com"}, format="json").status_code == 403
    assert not Domain.objects.exists()


def test_unknown_fields_and_apps_are_refused(api: Any, dev: Any, tenant: Tenant, web: App) -> None:
    r = api(dev).post(url(tenant), {"name": "www.example.com", "verified_at": "2020-01-01"}, format="json")
    assert r.status_code == 400 and "verified_at" in str(r.json())
    assert api(dev).post(url(tenant, "nope"), {"name": "www.example.com"}, format="json").status_code == 404
    assert not Domain.objects.exists()


def test_unverified_is_not_routed_and_a_failed_proof_is_a_422_that_changes_nothing(
    api: Any, dev: Any, tenant: Tenant, web: App, dns: TableResolver, sent_routes: list[Any], on_commit: Any
) -> None:
    serve(web)
    with on_commit():
        api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    assert app_hostnames(web) == ["web-acme.localhost"]
    assert not is_served("www.example.com")
    dns.records[("_hostpanel-challenge.www.example.com", "TXT")] = ["hostpanel-verify=wrong"]
    r = api(dev).post(url(tenant, suffix="www.example.com/verify/"), {"method": "dns"}, format="json")
    assert r.status_code == 422, r.json()
    message = r.json()["error"]["message"]
    assert "_hostpanel-challenge.www.example.com" in message and "found: hostpanel-verify=wrong" in message
    domain = Domain.objects.get()
    assert domain.verified_at is None and domain.cert_state == "none" and sent_routes == []
    assert AuditLog.objects.filter(action="domain.verify", result="failed").exists()


def test_a_dns_txt_proof_routes_the_domain_and_publishes_at_once(
    api: Any, dev: Any, tenant: Tenant, web: App, dns: TableResolver, sent_routes: list[Any], on_commit: Any
) -> None:
    serve(web)
    api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    token = Domain.objects.get().token
    dns.records[("_hostpanel-challenge.www.example.com", "TXT")] = ["other=1", f"hostpanel-verify={token}"]
    with on_commit():
        r = api(dev).post(url(tenant, suffix="www.example.com/verify/"), {}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["verified"] and r.json()["verified_method"] == "dns" and r.json()["verification"] is None
    assert r.json()["certificate"]["state"] == "pending"
    assert routed(sent_routes) == [["web-acme.localhost", "www.example.com"]]
    assert sent_routes[0][1]["routes"]["www.example.com"] == [[f"h{Host.objects.get().pk}", 30001]]
    assert app_hostnames(web) == ["web-acme.localhost", "www.example.com"]
    assert is_served("WWW.EXAMPLE.COM.") and claimed_hostnames()["www.example.com"] == web
    with on_commit():
        assert api(dev).delete(url(tenant, suffix="www.example.com/")).status_code == 204
    assert routed(sent_routes)[-1] == ["web-acme.localhost"]
    assert app_hostnames(web) == ["web-acme.localhost"] and not is_served("www.example.com")
    assert AuditLog.objects.filter(action="domain.remove", result="ok").exists()


def test_a_verified_wildcard_serves_one_label_below_and_the_exact_name_wins(
    api: Any, tenant: Tenant, web: App, make_app: Any, admin_user: Any, dns: TableResolver
) -> None:
    admin = api(admin_user)
    api_app = make_app(tenant, "api", http_port=80)
    admin.post(url(tenant), {"name": "*.example.com"}, format="json")
    admin.post(url(tenant, "api"), {"name": "api.example.com"}, format="json")
    for domain in Domain.objects.all():
        key = (f"_hostpanel-challenge.{domain.base_name}", "TXT")
        dns.records[key] = [*dns.records.get(key, []), f"hostpanel-verify={domain.token}"]
    r = admin.post(url(tenant, suffix="*.example.com/verify/"), {"method": "http"}, format="json")
    assert r.status_code == 400 and "DNS TXT" in r.json()["error"]["message"]
    assert admin.post(url(tenant, suffix="*.example.com/verify/"), {}, format="json").status_code == 200
    assert admin.post(url(tenant, "api", "api.example.com/verify/"), {}, format="json").status_code == 200
    claimed = claimed_hostnames()
    assert claimed["*.example.com"] == web and claimed["api.example.com"] == api_app
    assert is_served("shop.example.com") and is_served("api.example.com")
    assert not is_served("a.b.example.com") and not is_served("example.com")
    assert Domain.objects.get(name="*.example.com").cert_state == "on-demand"


def test_hostnames_need_an_http_port(make_app: Any, tenant: Tenant) -> None:
    worker = make_app(tenant, "worker")
    assert app_hostnames(worker) == [] and not is_served("worker-acme.localhost")
    web = make_app(tenant, "web", http_port=80)
    assert claimed_hostnames()["web-acme.localhost"] == web
    for hostile in ("", "localhost", "web-acme.localhost.evil.com", "1.2.3.4", "web-acme", "*.localhost"):
        assert not is_served(hostile)


def test_a_stale_unverified_claim_does_not_block_the_real_owner(
    api: Any, dev: Any, tenant: Tenant, web: App, make_app: Any, member: Any
) -> None:
    api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    Domain.objects.update(created_at=timezone.now() - timedelta(days=30))
    rival = TenantFactory(slug="rival")
    make_app(rival, "site", http_port=80)
    r = api(member(rival, Role.OWNER)).post(url(rival, "site"), {"name": "www.example.com"}, format="json")
    assert r.status_code == 201 and Domain.objects.get().tenant == rival


def test_the_well_known_url_answers_the_proof_for_a_pending_token_only(
    client: Any, api: Any, dev: Any, tenant: Tenant, web: App
) -> None:
    api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    domain = Domain.objects.get()
    r = client.get(f"/.well-known/hostpanel/{domain.token}")
    assert r.status_code == 200 and r.content.decode() == services.http_answer(domain)
    assert r.content.decode() != domain.token
    assert client.get("/.well-known/hostpanel/" + "0" * 64).status_code == 404
    assert client.get("/.well-known/hostpanel/' OR 1=1 --").status_code == 404
    assert client.post(f"/.well-known/hostpanel/{domain.token}").status_code == 405
    Domain.objects.update(verified_at=timezone.now())
    assert client.get(f"/.well-known/hostpanel/{domain.token}").status_code == 404


def test_the_proof_is_bound_to_name_and_token() -> None:
    a = proofs.http_answer("k", "www.example.com", "t" * 64)
    assert a != proofs.http_answer("k", "www.example.org", "t" * 64)
    assert a != proofs.http_answer("other", "www.example.com", "t" * 64)


def test_without_a_proxy_answering_the_certificate_stays_pending_and_unverified_is_a_422(
    api: Any, dev: Any, tenant: Tenant, web: App, settings: Any
) -> None:
    api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    r = api(dev).post(url(tenant, suffix="www.example.com/certificate/"), format="json")
    assert r.status_code == 422 and "not verified" in r.json()["error"]["message"]
    Domain.objects.update(verified_at=timezone.now(), cert_state="pending")
    settings.HOSTPANEL_PROXY_HTTPS_PORT = free_port()
    settings.HOSTPANEL_EDGE_ADDRESSES = ["127.0.0.1"]
    r = api(dev).post(url(tenant, suffix="www.example.com/certificate/"), format="json")
    assert r.status_code == 200
    assert (
        r.json()["certificate"]["state"] == "pending"
        and r.json()["certificate"]["error"] == "no proxy answered"
    )


def test_check_certificates_records_every_verified_domain(
    api: Any, dev: Any, tenant: Tenant, web: App, settings: Any
) -> None:
    from io import StringIO

    from django.core.management import call_command

    for name in ("a.example.com", "b.example.com"):
        api(dev).post(url(tenant), {"name": name}, format="json")
    Domain.objects.filter(name="a.example.com").update(verified_at=timezone.now(), cert_state="pending")
    settings.HOSTPANEL_PROXY_HTTPS_PORT = free_port()
    settings.HOSTPANEL_EDGE_ADDRESSES = ["127.0.0.1"]
    out = StringIO()
    call_command("check_certificates", stdout=out)
    assert out.getvalue() == "a.example.com: pending (no proxy answered)\n"
    assert Domain.objects.get(name="a.example.com").cert_checked_at is not None
    assert Domain.objects.get(name="b.example.com").cert_checked_at is None


def test_a_tenant_holds_at_most_the_configured_number_of_domains(
    api: Any, dev: Any, tenant: Tenant, web: App, settings: Any
) -> None:
    settings.HOSTPANEL_DOMAINS_PER_TENANT = 2
    for name in ("a.example.com", "b.example.com"):
        assert api(dev).post(url(tenant), {"name": name}, format="json").status_code == 201
    r = api(dev).post(url(tenant), {"name": "c.example.com"}, format="json")
    assert r.status_code == 400 and "2 domains, the most allowed" in r.json()["error"]["message"]
    assert Domain.objects.count() == 2


def test_an_operator_releases_a_domain_in_the_admin_through_the_service(
    client: Any,
    admin_user: Any,
    api: Any,
    dev: Any,
    tenant: Tenant,
    web: App,
    sent_routes: list[Any],
    on_commit: Any,
) -> None:
    serve(web)
    api(dev).post(url(tenant), {"name": "www.example.com"}, format="json")
    Domain.objects.update(verified_at=timezone.now())
    domain = Domain.objects.get()
    client.force_login(admin_user)
    assert client.get("/admin/domains/domain/").status_code == 200
    with on_commit():
        r = client.post(f"/admin/domains/domain/{domain.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and not Domain.objects.exists()
    assert AuditLog.objects.filter(action="domain.remove", result="ok", actor_name="root-admin").exists()
    assert routed(sent_routes)[-1] == ["web-acme.localhost"]
