"""Queries per request for every list and detail endpoint of /api/v1/ (as netbox asserts them).

Each endpoint is read once with one object of its kind and once with ``N`` of them; the
number of queries must be the same (no N+1) and within the endpoint's budget below, so a
query that creeps in shows up here with its SQL. Tenant resources are read through an
API token (``Authorization: Token``, the path automation and the load bench take); the
admin-only ones through an administrator's session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern
from rest_framework.test import APIClient

from hostpanel.api import urls as api_urls
from hostpanel.api.urls import router
from hostpanel.audit.services import Actor, record
from hostpanel.builds.models import Build
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.domains import services as domains
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.networks import services as networks
from hostpanel.secrets import services as secrets
from hostpanel.stacks import services as stacks
from hostpanel.stacks.sources import pasted
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory, UserFactory

N = 6  # objects in the "many" case

# Queries of one GET, list and detail, whatever the number of objects. A token request costs
# one query to authenticate (token, user, tenant and the member's role at once) when the token
# cache has not got it (always here: the tests turn it off). A list whose page is not full costs
# no count query (hostpanel/api/pagination.py: the page tells the count; test_pagination.py).
TENANT_BUDGETS: dict[str, tuple[int, int]] = {
    "apps": (4, 4),  # token; apps (+release), replicas (+host, release), latest rollouts
    "containers": (2, 2),
    "secrets": (2, 2),
    "members": (2, 2),
    "tokens": (2, 2),
    "images": (2, 2),
    "volumes": (2, 2),
    "builds": (2, 2),
    "audit": (2, 2),
    "apps/web/domains": (4, 4),  # the app first; the proxy addresses once
    "networks": (3, 3),  # token; networks, the apps on them
    "stacks": (7, 7),  # token; stacks, services, apps, releases, tenants, replicas (+host)
}
SINGLETON_BUDGETS: dict[str, int] = {"quota": 16, "usage": 4}  # quota: usage and storage sums
# An administrator's session costs two queries (session, user) before the view's own.
ADMIN_BUDGETS: dict[str, tuple[int, int | None]] = {  # None: no detail route
    "tenants": (3, 3),
    "hosts": (3, 3),
    "audit": (3, 3),
    "images": (3, None),
}
ADMIN_SINGLETON_BUDGETS: dict[str, int] = {"prices": 3, "tls": 2}

Maker = Callable[[Tenant, int], str]  # makes object ``i`` of a tenant; returns its key in URLs


def _admin() -> Actor:
    user = UserFactory(username="counts-admin", is_staff=True, is_superuser=True)
    return Actor(user=user)


def _app(tenant: Tenant, i: int, **spec: Any) -> App:
    values: dict[str, Any] = {"image": "busybox:latest", "command": ["sleep", "1"]} | spec
    return deployments.create_app(_admin(), tenant, f"app{i}", deployments.AppSpec(**values))


def _web(tenant: Tenant) -> App:
    app = App.objects.filter(tenant=tenant, name="web").first()
    if app is not None:
        return app
    spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "1"], http_port=80)
    return deployments.create_app(_admin(), tenant, "web", spec)


def _compose(i: int) -> str:
    """A two-service compose file whose service names are unique to stack ``i``."""
    return (
        "services:\n"
        f"  web{i}:\n    image: busybox:latest\n    command: [sleep, '1']\n"
        f"  worker{i}:\n    image: busybox:latest\n    command: [sleep, '1']\n"
        f"    depends_on: [web{i}]\n"
    )


def _make_app(tenant: Tenant, i: int) -> str:
    app = _app(tenant, i, replicas=2)
    deployments.deploy(_admin(), app, env={"V": "2"})  # a second release and rollout
    return app.name


MAKERS: dict[str, Maker] = {
    "apps": _make_app,
    "containers": lambda t, i: str(Replica.objects.get(app=_app(t, i)).pk),
    "secrets": lambda t, i: secrets.create_secret(_admin(), t, f"key{i}", "value").name,
    "members": lambda t, i: str(MembershipFactory(tenant=t, role=Role.VIEWER).pk),
    "tokens": lambda t, i: str(
        create_token(Actor(user=MembershipFactory(tenant=t, role=Role.DEVELOPER).user), t, f"t{i}")[0].pk
    ),
    "images": lambda t, i: str(Image.objects.create(tenant=t, reference=f"{t.slug}/app{i}:1").pk),
    "volumes": lambda t, i: str(Volume.objects.create(tenant=t, name=f"data{i}", size_bytes=2**30).pk),
    "builds": lambda t, i: str(
        Build.objects.create(tenant=t, name=f"web:{i}", reference=f"{t.slug}/web:{i}").pk
    ),
    "audit": lambda t, i: str(record(_admin(), f"test.event{i}", tenant=t, obj=t).pk),
    "apps/web/domains": lambda t, i: (
        domains.add_domain(_admin(), _web(t), f"www{i}.{t.slug}.example.com").name
    ),
    "networks": lambda t, i: networks.create_network(_admin(), t, f"net{i}").name,
    "stacks": lambda t, i: stacks.create_stack(_admin(), t, f"stack{i}", pasted(_compose(i))).name,
}
ADMIN_MAKERS: dict[str, Callable[[int], str]] = {
    "tenants": lambda i: TenantFactory(slug=f"other{i}").slug,
    "hosts": lambda i: str(HostFactory(name=f"h{i + 2}").pk),
    "audit": lambda i: str(record(_admin(), f"test.event{i}", tenant=None).pk),
    "images": lambda i: str(Image.objects.create(tenant=None, reference=f"base{i}:1").pk),
}


def queries(client: APIClient, url: str) -> list[str]:
    """The SQL of one GET of ``url`` (which must answer 200), after a first GET (which may
    record the token's last use, once a minute)."""
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return [q["sql"] for q in captured.captured_queries]


def assert_same_and_within(one: list[str], many: list[str], budget: int, what: str) -> None:
    listing = "\n".join(many)
    assert len(many) == len(one), (
        f"{what}: {len(one)} queries with 1 object, {len(many)} with {N}:\n{listing}"
    )
    assert len(many) <= budget, f"{what}: {len(many)} queries, the budget is {budget}:\n{listing}"


@pytest.fixture
def admin_session(db: None, host: Host) -> APIClient:
    client = APIClient()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("resource", sorted(TENANT_BUDGETS))
def test_tenant_resource_queries_do_not_grow(resource: str, owner_token: tuple[Tenant, APIClient]) -> None:
    tenant, client = owner_token
    make, (list_budget, detail_budget) = MAKERS[resource], TENANT_BUDGETS[resource]
    base = f"/api/v1/tenants/{tenant.slug}/{resource}/"
    first = make(tenant, 0)
    one_list, one_detail = queries(client, base), queries(client, f"{base}{first}/")
    for i in range(1, N):
        make(tenant, i)
    many_list = queries(client, base)
    assert client.get(base).json()["count"] >= N
    assert_same_and_within(one_list, many_list, list_budget, f"GET {base}")
    assert_same_and_within(one_detail, queries(client, f"{base}{first}/"), detail_budget, f"GET {base}<key>/")


@pytest.mark.parametrize("resource", sorted(SINGLETON_BUDGETS))
def test_tenant_singleton_queries_do_not_grow(resource: str, owner_token: tuple[Tenant, APIClient]) -> None:
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/{resource}/"
    _app(tenant, 0)
    one = queries(client, url)
    for i in range(1, N):
        _app(tenant, i)
    assert_same_and_within(one, queries(client, url), SINGLETON_BUDGETS[resource], f"GET {url}")


@pytest.mark.parametrize("resource", sorted(ADMIN_BUDGETS))
def test_admin_resource_queries_do_not_grow(resource: str, admin_session: APIClient) -> None:
    make, (list_budget, detail_budget) = ADMIN_MAKERS[resource], ADMIN_BUDGETS[resource]
    base = f"/api/v1/{resource}/"
    first = make(0)
    one_list = queries(admin_session, base)
    one_detail = queries(admin_session, f"{base}{first}/") if detail_budget is not None else []
    for i in range(1, N):
        make(i)
    assert_same_and_within(one_list, queries(admin_session, base), list_budget, f"GET {base}")
    if detail_budget is not None:
        many_detail = queries(admin_session, f"{base}{first}/")
        assert_same_and_within(one_detail, many_detail, detail_budget, f"GET {base}<key>/")


@pytest.mark.parametrize("resource", sorted(ADMIN_SINGLETON_BUDGETS))
def test_admin_singleton_queries(resource: str, admin_session: APIClient) -> None:
    url = f"/api/v1/{resource}/"
    one = queries(admin_session, url)
    for i in range(N):
        TenantFactory(slug=f"other{i}")
    assert_same_and_within(one, queries(admin_session, url), ADMIN_SINGLETON_BUDGETS[resource], f"GET {url}")


def test_token_revocation_takes_effect_on_the_next_request(owner_token: tuple[Tenant, APIClient]) -> None:
    """With the token cache off (the tests' setting), a revoked token is refused at once
    (test_token_cache.py: within the bound with it on)."""
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    assert client.get(url).status_code == 200
    token = tenant.api_tokens.get(name="automation")
    token.revoked_at = token.created_at
    token.save(update_fields=["revoked_at"])
    assert client.get(url).status_code == 401


def test_role_change_takes_effect_on_the_next_request(owner_token: tuple[Tenant, APIClient]) -> None:
    """The role read with the token is this request's: a member removed is an outsider at once."""
    tenant, client = owner_token
    url = f"/api/v1/tenants/{tenant.slug}/secrets/"
    assert client.post(url, {"name": "k", "value": "v"}, format="json").status_code == 201
    membership = tenant.memberships.get()
    membership.role = Role.VIEWER
    membership.save(update_fields=["role"])
    assert client.post(url, {"name": "k2", "value": "v"}, format="json").status_code == 403
    membership.delete()
    assert client.get(url).status_code == 404


def test_every_api_read_endpoint_is_counted() -> None:
    """A new resource under /api/v1/ must get a row in the budgets above."""
    tenant_prefix = "tenants/(?P<tenant_slug>[a-z0-9][a-z0-9_-]*)/"
    counted = {
        tenant_prefix + r.replace("apps/web/", "apps/(?P<app_name>[a-z0-9][a-z0-9-]*)/")
        for r in TENANT_BUDGETS
    }
    counted |= set(ADMIN_BUDGETS) | set(ADMIN_SINGLETON_BUDGETS) | {"tls/check"}  # a POST
    counted |= {f"tenants/<str:tenant_slug>/{r}" for r in SINGLETON_BUDGETS}
    routed = {prefix for prefix, _, _ in router.registry}
    routed |= {str(p.pattern).rstrip("/") for p in api_urls.urlpatterns if isinstance(p, URLPattern)}
    assert routed - counted == set()
