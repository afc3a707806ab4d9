"""The routing table the panel builds, publishing it, and Caddy's ask endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.deployments.models import App, Replica
from hostpanel.edge import services
from hostpanel.edge.models import PublishedRoutes
from hostpanel.edge.table import build_routes, forget_served_hostnames, is_served
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import HostFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_served_hostnames() -> None:
    forget_served_hostnames()


def serve(app: App, host: Host, host_ports: list[int], health: str = "") -> None:
    """Mark ``app``'s replicas running and ready on ``host``, http_port published on ``host_ports``."""
    http_port = app.current_release.http_port if app.current_release else None
    replicas = list(Replica.objects.filter(app=app).order_by("index"))
    assert len(replicas) == len(host_ports)
    for replica, port in zip(replicas, host_ports, strict=True):
        replica.host, replica.state, replica.health = host, Replica.State.RUNNING, health
        replica.ready = True  # passed its readiness gate (rotation.serving_replicas)
        replica.ports = [{"container_port": http_port, "protocol": "tcp", "host_port": port}]
        replica.save()


@pytest.fixture
def web(make_app: Callable[..., App], host: Host) -> Callable[..., App]:
    host.address = "10.0.0.1"
    host.save()

    def make(tenant: Tenant, name: str = "web", ports: tuple[int, ...] = (30001,), **spec: Any) -> App:
        app = make_app(tenant, name, http_port=8080, replicas=len(ports), **spec)
        serve(app, host, list(ports))
        return app

    return make


def test_a_hostname_maps_to_its_serving_replicas_on_their_hosts(
    web: Callable[..., App], tenant: Tenant, host: Host
) -> None:
    app = web(tenant, "shop", ports=(30001, 30002))
    routes = build_routes(5)
    key = f"h{host.pk}"
    assert routes.generation == 5
    assert dict(routes.hosts) == {key: "10.0.0.1"}
    assert dict(routes.routes) == {"shop-acme.localhost": ((key, 30001), (key, 30002))}
    # Replicas not taking requests are left out; an app with none has no route (NXDOMAIN).
    Replica.objects.filter(app=app, index=0).update(health="unhealthy")
    assert build_routes().routes["shop-acme.localhost"] == ((key, 30002),)
    Replica.objects.filter(app=app).update(state=Replica.State.STOPPED)
    assert build_routes().routes == {}


def test_apps_without_an_http_port_and_down_hosts_are_not_routed(
    web: Callable[..., App], make_app: Callable[..., App], tenant: Tenant, host: Host
) -> None:
    make_app(tenant, "worker")  # no http_port
    web(tenant, "site")
    assert list(build_routes().routes) == ["site-acme.localhost"]
    Host.objects.filter(pk=host.pk).update(state=Host.State.DOWN)
    assert build_routes().routes == {}


def test_replicas_on_several_hosts_all_serve(web: Callable[..., App], tenant: Tenant, host: Host) -> None:
    app = web(tenant, "site", ports=(30001, 30002))
    far = HostFactory(name="far", address="10.0.0.2")
    Replica.objects.filter(app=app, index=1).update(host=far)
    routes = build_routes()
    assert set(routes.routes["site-acme.localhost"]) == {(f"h{host.pk}", 30001), (f"h{far.pk}", 30002)}
    assert routes.hosts[f"h{far.pk}"] == "10.0.0.2"


def test_a_name_two_tenants_could_claim_stays_with_the_first_app(
    web: Callable[..., App], host: Host, make_app: Callable[..., App], admin_actor: Any
) -> None:
    from hostpanel.deployments import services as deployments
    from hostpanel.errors import Conflict

    web(TenantFactory(slug="c"), "a-b", ports=(30001,))
    squatter = TenantFactory(slug="b-c")
    with pytest.raises(Conflict, match=r"a-b-c\.localhost, which another app already answers at") as refused:
        web(squatter, "a", ports=(30002,))  # also a-b-c.localhost
    assert "'c'" not in str(refused.value)  # says nothing of who holds it
    assert not App.objects.filter(tenant=squatter).exists()  # changes nothing
    # Without an HTTP port there is no hostname to share; adding one later is refused the same way.
    worker = make_app(squatter, "a")
    with pytest.raises(Conflict, match="choose another app name"):
        deployments.deploy(admin_actor, worker, http_port=8080)
    worker.refresh_from_db()
    assert worker.current_release is not None and worker.current_release.http_port is None
    assert build_routes().routes["a-b-c.localhost"] == ((f"h{host.pk}", 30001),)


@pytest.mark.django_db(transaction=True)
def test_publish_sends_a_new_generation_to_up_hosts_only_when_the_table_changes(
    web: Callable[..., App], tenant: Tenant, host: Host, sent_routes: list[tuple[str, Any]]
) -> None:
    HostFactory(name="down", state=Host.State.DOWN)
    HostFactory(name="second")
    services.publish_routes()  # outside a transaction: at once
    assert [q for q, _ in sent_routes] == ["host.h1", "host.second"]
    assert sent_routes[0][1]["routes"] == {}
    first = sent_routes[0][1]["generation"]
    sent_routes.clear()
    services.publish_routes()
    assert sent_routes == []  # nothing changed: nothing sent, same generation
    web(tenant, "site")
    services.publish_routes()
    (_, table), _ = sent_routes
    assert table["generation"] == first + 1
    assert list(table["routes"]) == ["site-acme.localhost"]
    row = PublishedRoutes.objects.get(pk=1)
    assert (row.generation, row.table) == (table["generation"], table)


def test_publish_waits_for_the_callers_commit(
    web: Callable[..., App], tenant: Tenant, sent_routes: list[tuple[str, Any]], on_commit: Any
) -> None:
    with on_commit():
        web(tenant, "site")
        services.publish_routes()
        assert sent_routes == []
    assert len(sent_routes) == 1


@pytest.mark.django_db(transaction=True)
def test_a_catching_up_host_gets_the_last_table(
    web: Callable[..., App], tenant: Tenant, host: Host, sent_routes: list[tuple[str, Any]]
) -> None:
    services.send_routes_to(host)
    assert sent_routes == []  # nothing published yet: nothing to send
    web(tenant, "site")
    services.publish_routes()
    sent_routes.clear()
    services.send_routes_to(host)
    assert sent_routes == [("host.h1", PublishedRoutes.objects.get(pk=1).table)]


@pytest.mark.django_db(transaction=True)
def test_a_hosts_report_publishes_the_routes(
    web: Callable[..., App],
    tenant: Tenant,
    host: Host,
    sent_routes: list[tuple[str, Any]],
    monkeypatch: Any,
    agents: EnrolledAgents,
) -> None:
    """What its agent reports after a reconcile (``POST host/report``, the agent's own client)
    publishes the table when a replica of the host changed, and builds none when nothing did."""
    services._seen.clear()
    web(tenant, "site")
    replica = Replica.objects.get(app__name="site")
    client = agents.client(host)

    def report(health: str = "") -> None:
        state = {"replica": replica.pk, "generation": replica.generation, "state": "running"}
        assert client.report([state | {"health": health, "ready": True}])["ignored"] == []

    report()
    assert [list(t["routes"]) for _, t in sent_routes] == [["site-acme.localhost"]]
    # A report that changed no replica of the host builds no table at all.
    with monkeypatch.context() as m:
        m.setattr(services, "build_routes", lambda *a: pytest.fail("built a table for nothing"))
        report()
    # A replica that changes (here: it stops taking requests) is published at the next report.
    report(health="unhealthy")
    assert sent_routes[-1][1]["routes"] == {}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("domain=site-acme.localhost", 200),
        ("domain=SITE-ACME.localhost.", 200),  # case and a trailing dot do not matter
        ("domain=other-acme.localhost", 404),
        ("domain=acme.localhost", 404),
        ("domain=x.site-acme.localhost", 404),
        ("domain=example.com", 404),
        ("domain=127.0.0.1", 404),
        ("domain=" + "a" * 400, 404),
        ("domain=site-acme.localhost%00", 404),
        ("domain=", 400),
        ("", 400),
    ],
)
def test_caddy_may_get_a_certificate_only_for_our_hostnames(
    web: Callable[..., App], tenant: Tenant, api: Callable[..., Any], query: str, status: int
) -> None:
    web(tenant, "site")
    response = api().get(f"/edge/ask?{query}")
    assert response.status_code == status, response.content
    if status == 400:
        assert b"?domain=" in response.content


def test_the_ask_endpoint_answers_for_a_hostname_without_running_replicas(
    make_app: Callable[..., App], tenant: Tenant
) -> None:
    make_app(tenant, "site", http_port=8080)  # nothing runs yet: the certificate may come first
    assert is_served("site-acme.localhost")
    assert not is_served("web-acme.localhost")


def test_a_flood_of_asks_walks_the_apps_once_per_interval(
    make_app: Callable[..., App], tenant: Tenant, django_assert_max_num_queries: Any
) -> None:
    make_app(tenant, "site", http_port=8080)
    assert is_served("site-acme.localhost")  # fills the cache
    with django_assert_max_num_queries(0):
        for n in range(200):
            assert not is_served(f"random-{n}.example")


def test_stopping_deleting_or_stopping_one_container_takes_the_route_out_at_once(
    web: Callable[..., App],
    tenant: Tenant,
    sent_routes: list[tuple[str, Any]],
    on_commit: Any,
    admin_actor: Any,
) -> None:
    """Without waiting for a host's reconcile: the edge's table follows the panel's change on commit."""
    from hostpanel.deployments import services as deployments

    shop = web(tenant, "shop", ports=(30001, 30002))
    web(tenant, "site")
    with on_commit():
        services.publish_routes()
    assert sorted(sent_routes[-1][1]["routes"]) == ["shop-acme.localhost", "site-acme.localhost"]
    with on_commit():
        deployments.container_action(admin_actor, Replica.objects.get(app=shop, index=0), "stop")
    assert [port for _, port in sent_routes[-1][1]["routes"]["shop-acme.localhost"]] == [30002]
    with on_commit():
        deployments.set_state(admin_actor, shop, App.State.STOPPED)
    assert list(sent_routes[-1][1]["routes"]) == ["site-acme.localhost"]
    with on_commit():
        deployments.delete_app(admin_actor, App.objects.get(name="site"))
    assert sent_routes[-1][1]["routes"] == {}
