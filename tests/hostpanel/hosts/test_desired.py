"""The internal API's desired state and report doors (hostpanel/deployments/desired.py).

A host's document holds only its own replicas' specs, without secret values; another host's
token gets its own, a tenant's token or none gets a 401; a report writes only the caller's
replicas, at their current generation. The agent applying it is
tests/hostpanel/e2e/test_e2e_agent_api.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rest_framework.test import APIClient

from engine.runtime.model import ContainerSpec
from hostpanel.agent import remote
from hostpanel.audit.services import Actor
from hostpanel.deployments import desired
from hostpanel.deployments.models import Replica
from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host
from hostpanel.secrets.services import create_secret
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import as_host, spec_of
from tests.hostpanel.hosts.fake_engine import FakeEngine

VALUE = "desired-s3cret-1234"
Hosts = dict[str, tuple[X25519PrivateKey, str]]


def spread(tenant: Tenant, make_app: Any, admin_actor: Any) -> dict[str, list[Replica]]:
    """acme's web (2 replicas, a secret) on sa and sb, and other's db on sb: host -> replicas."""
    create_secret(admin_actor, tenant, "db-password", VALUE)
    web = make_app(tenant, replicas=2, env={"MODE": "prod"}, secrets=[{"name": "db-password", "env": "DBP"}])
    other = TenantFactory(slug="other")
    db = make_app(other, name="db", env={"OTHER_ONLY": "x"})
    sa, sb = Host.objects.get(name="sa"), Host.objects.get(name="sb")
    first, second = Replica.objects.filter(app=web).order_by("index")
    Replica.objects.filter(pk=first.pk).update(host=sa)
    Replica.objects.filter(pk=second.pk).update(host=sb)
    Replica.objects.filter(app=db).update(host=sb)
    return {
        "sa": list(Replica.objects.filter(host=sa)),
        "sb": list(Replica.objects.filter(host=sb).order_by("pk")),
    }


@pytest.mark.django_db
def test_a_host_gets_only_its_own_replicas(
    enrolled: Hosts, tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    placed = spread(tenant, make_app, admin_actor)
    (_, token_a), (_, token_b) = enrolled["sa"], enrolled["sb"]

    answer = as_host(token_a).get("/internal/v1/host/desired")
    assert answer.status_code == 200, answer.content
    doc = answer.json()
    assert doc["host"] == "sa" and doc["out_of_service"] is False
    assert [r["replica"] for r in doc["replicas"]] == [r.pk for r in placed["sa"]]
    (entry,) = doc["replicas"]
    assert entry["tenant"] == "acme" and "MODE=prod" in entry["env"]
    assert entry["secrets"] == [{"name": "db-password", "env": "DBP"}]  # names, never the value
    assert VALUE not in answer.content.decode() and b"other" not in answer.content
    assert entry["generation"] == placed["sa"][0].generation and entry["running"] is True

    b = as_host(token_b).get("/internal/v1/host/desired").json()
    assert [r["replica"] for r in b["replicas"]] == [r.pk for r in placed["sb"]]
    assert placed["sa"][0].pk not in {r["replica"] for r in b["replicas"]}

    # the door is for hosts only: a tenant's API token (either scheme), none or a forged one
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _, secret = create_token(Actor(user=owner), tenant, "automation")
    for client in (APIClient(), as_host(secret), as_host("hphost_forged")):
        assert client.get("/internal/v1/host/desired").status_code == 401
    tenant_client = APIClient()
    tenant_client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert tenant_client.get("/internal/v1/host/desired").status_code == 401
    session = APIClient()
    session.force_login(owner)
    assert session.get("/internal/v1/host/desired").status_code in (401, 403)

    enrollment.revoke(None, "sa")  # revoked: refused at once
    assert as_host(token_a).get("/internal/v1/host/desired").status_code == 401


@pytest.mark.django_db
def test_the_document_makes_the_same_spec_after_it_travelled(
    enrolled: Hosts, tenant: Tenant, make_app: Any
) -> None:
    """One spec builder: the entry an enrolled host fetches (JSON over the wire), through
    container_spec, is the spec the panel makes of the replica's own document entry."""
    make_app(tenant, env={"A": "1"}, ports=[{"container_port": 80}], volumes=[], command=["sleep", "9"])
    replica = Replica.objects.get()
    Replica.objects.filter(pk=replica.pk).update(host=Host.objects.get(name="sa"))
    replica = Replica.objects.select_related("app__tenant", "release", "host").get()
    doc = as_host(enrolled["sa"][1]).get("/internal/v1/host/desired").json()["replicas"][0]
    spec = desired.container_spec(json.loads(json.dumps(doc)), {})
    assert spec == spec_of(replica)
    assert spec.command == ("sleep", "9") and "A=1" in spec.env


@pytest.mark.django_db
def test_a_report_writes_only_the_callers_replicas(
    enrolled: Hosts, tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    placed = spread(tenant, make_app, admin_actor)
    mine, theirs = placed["sa"][0], placed["sb"][0]
    client = as_host(enrolled["sa"][1])

    def report(*entries: dict[str, Any]) -> Any:
        return client.post("/internal/v1/host/report", {"replicas": list(entries)}, format="json")

    ok = report(
        {"replica": mine.pk, "generation": mine.generation, "state": "running", "engine_id": "abc"},
        {"replica": theirs.pk, "generation": theirs.generation, "state": "failed", "message": "forged"},
        {"replica": mine.pk + 1000, "generation": 0, "state": "running"},
    )
    assert ok.status_code == 200, ok.content
    assert ok.json() == {"written": [mine.pk], "ignored": [theirs.pk, mine.pk + 1000]}
    assert Replica.objects.get(pk=mine.pk).state == "running"
    assert Replica.objects.get(pk=mine.pk).engine_id == "abc"
    untouched = Replica.objects.get(pk=theirs.pk)
    assert untouched.state == theirs.state and untouched.message == theirs.message

    stale = report({"replica": mine.pk, "generation": mine.generation + 1, "state": "exited"})
    assert stale.json()["ignored"] == [mine.pk] and Replica.objects.get(pk=mine.pk).state == "running"

    for bad, word in (
        ({"replica": mine.pk, "generation": mine.generation, "state": "running", "host": "sb"}, "host"),
        ({"replica": mine.pk, "generation": mine.generation, "state": "pending"}, "state"),
        ({"replica": "x", "generation": mine.generation, "state": "running"}, "replica"),
    ):
        refused = report(bad)
        assert refused.status_code == 400 and word in refused.content.decode(), refused.content
    assert client.post("/internal/v1/host/report", {"replicas": [], "x": 1}, format="json").status_code == 400
    assert Replica.objects.get(pk=mine.pk).state == "running"
    assert APIClient().post("/internal/v1/host/report", {"replicas": []}, format="json").status_code == 401


START = {  # an agent's POST host/start
    "address": "10.0.0.7",
    "cpu_millis": 2000,
    "memory_bytes": 4 * 1024**3,
    "disk_bytes": 10**10,
    "engine_root": "/var/lib/hp",
    "engine_instance": "hp-a",
}


@pytest.mark.django_db
def test_an_agent_starts_as_its_own_host_only(enrolled: Hosts) -> None:
    """``POST host/start`` (an agent registers its capacity): always the
    caller's own host; unknown fields and bad values are refused and change nothing."""
    body = dict(START)
    client = as_host(enrolled["sa"][1])
    answer = client.post("/internal/v1/host/start", body, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["queues"] == ["host.sa", "build.sa"]
    sa, sb = Host.objects.get(name="sa"), Host.objects.get(name="sb")
    assert (sa.address, sa.cpu_millis, sa.engine_instance, sa.state) == ("10.0.0.7", 2000, "hp-a", "up")
    assert sb.address != "10.0.0.7"
    for bad, word in (({**body, "name": "sb"}, "name"), ({**body, "cpu_millis": 0}, "cpu_millis")):
        refused = client.post("/internal/v1/host/start", bad, format="json")
        assert refused.status_code == 400 and word in refused.content.decode(), refused.content
    assert Host.objects.get(name="sb").address == sb.address
    assert Host.objects.get(name="sa").cpu_millis == 2000
    assert APIClient().post("/internal/v1/host/start", body, format="json").status_code == 401


@pytest.mark.django_db
def test_an_agent_start_registers_its_engines_base_images_and_nothing_else(enrolled: Hosts) -> None:
    """The base images an agent's engine holds become base images; a name in a tenant's namespace
    never does; a bad reference is refused with what was wrong, and that start changes nothing."""
    from hostpanel.images.models import Image

    TenantFactory(slug="acme")
    body = {
        "address": "10.0.0.8",
        "cpu_millis": 1000,
        "memory_bytes": 2 * 1024**3,
        "disk_bytes": 10**10,
        "engine_root": "/var/lib/hp",
        "engine_instance": "hp-a",
    }
    client = as_host(enrolled["sa"][1])
    bad = client.post(
        "/internal/v1/host/start", body | {"base_images": ["busybox:latest", "Bad Name!"]}, format="json"
    )
    assert bad.status_code == 400 and "base_images: 'Bad Name!'" in bad.content.decode(), bad.content
    assert not Image.objects.exists() and Host.objects.get(name="sa").address != "10.0.0.8"
    for refused in (["x"] * 501, "busybox:latest", [{"ref": "busybox"}]):
        answer = client.post("/internal/v1/host/start", body | {"base_images": refused}, format="json")
        assert answer.status_code == 400 and "base_images" in answer.content.decode(), answer.content
    assert not Image.objects.exists()

    images = ["busybox", "debian:bookworm", "acme/web:1", "library/alpine:3"]
    answer = client.post("/internal/v1/host/start", body | {"base_images": images}, format="json")
    assert answer.status_code == 200, answer.content
    base = set(Image.objects.filter(tenant=None).values_list("reference", flat=True))
    registered = set(answer.json()["registered_images"])
    assert base == {"busybox:latest", "debian:bookworm", "library/alpine:3"} == registered
    assert not Image.objects.filter(reference__startswith="acme/").exists()  # a tenant's name: never base
    again = client.post("/internal/v1/host/start", body | {"base_images": images}, format="json")
    assert again.json()["registered_images"] == []  # already there: nothing new
    assert Host.objects.get(name="sa").address == "10.0.0.8"


def publish_a_route(web: Any, on_commit: Any) -> Host:
    """Run ``web``'s replica, ready, on host sb (address 10.0.0.2, host port 30001) and publish the
    routing table (one route: web-acme.localhost); host sb."""
    from hostpanel.edge import services as edge_services

    Host.objects.filter(name="sb").update(address="10.0.0.2")
    sb = Host.objects.get(name="sb")
    Replica.objects.filter(app=web).update(
        host=sb,
        state=Replica.State.RUNNING,
        ready=True,
        ports=[{"container_port": 8080, "protocol": "tcp", "host_port": 30001}],
    )
    with on_commit():
        edge_services.publish_routes()
    return sb


@pytest.mark.django_db
def test_an_agent_start_gets_the_last_routing_table_on_its_own_queue_only(
    enrolled: Hosts, tenant: Tenant, make_app: Any, sent_routes: list[tuple[str, Any]], on_commit: Any
) -> None:
    """``POST host/start`` sends the last published routing table to the caller's queue (its edge
    serves it at once), to no other host;
    before anything is published, or for a refused start, nothing is sent."""
    from hostpanel.edge import services as edge_services

    body = dict(START)
    client = as_host(enrolled["sa"][1])
    assert client.post("/internal/v1/host/start", body, format="json").status_code == 200
    assert sent_routes == []  # nothing published yet

    sb = publish_a_route(make_app(tenant, http_port=8080), on_commit)
    table = edge_services.published().table
    assert table["routes"] == {"web-acme.localhost": [[f"h{sb.pk}", 30001]]}
    sent_routes.clear()

    refused = client.post("/internal/v1/host/start", {**body, "cpu_millis": 0}, format="json")
    assert refused.status_code == 400 and sent_routes == []
    answer = client.post("/internal/v1/host/start", body, format="json")
    assert answer.status_code == 200, answer.content
    assert sent_routes == [("host.sa", table)]  # the caller's queue, the last table; nobody else's


@pytest.mark.django_db
def test_an_agent_catches_up_with_the_routing_table_it_missed(
    enrolled: Hosts, tenant: Tenant, make_app: Any, on_commit: Any, tmp_path: Any
) -> None:
    """``GET host/routes?after=N``: the last published table when newer than what the caller serves,
    else 204; a bad ``after`` is a 400 and a tenant's token or none a 401. The agent without the
    database applies it to its edge at its reconciles (hostagent.catch_up_routes)."""
    from hostpanel.agent.edge import EdgeAgent
    from hostpanel.agent.management.commands.hostagent import catch_up_routes
    from hostpanel.edge import services as edge_services

    client = as_host(enrolled["sa"][1])
    assert client.get("/internal/v1/host/routes").status_code == 204  # nothing published yet
    publish_a_route(make_app(tenant, http_port=8080), on_commit)
    row = edge_services.published()
    answer = client.get("/internal/v1/host/routes?after=0")
    assert answer.status_code == 200 and answer.json() == row.table
    assert client.get(f"/internal/v1/host/routes?after={row.generation}").status_code == 204
    for bad in ("x", "-1", "1e99"):
        refused = client.get(f"/internal/v1/host/routes?after={bad}")
        assert refused.status_code == 400 and "after" in refused.content.decode(), refused.content
    assert APIClient().get("/internal/v1/host/routes").status_code == 401
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _, secret = create_token(Actor(owner), tenant, "t")
    tenant_token = APIClient()
    tenant_token.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert tenant_token.get("/internal/v1/host/routes").status_code == 401

    class Panel:  # the agent's client: the real door through this test's API client
        def routes(self, after: int) -> dict[str, Any] | None:
            got = client.get(f"/internal/v1/host/routes?after={after}")
            return got.json() if got.status_code == 200 else None

    edge = EdgeAgent(tmp_path / "edge", None, dns_port=0)
    assert edge.generation == 0
    assert catch_up_routes(edge, Panel()) is True  # type: ignore[arg-type]
    assert edge.generation == row.generation
    assert catch_up_routes(edge, Panel()) is False  # up to date: nothing to apply


class Claims:
    """The agent's client, for its claims only (the panel's answer is the test's)."""

    def __init__(self) -> None:
        self.granted = True
        self.asked: list[tuple[int, int]] = []

    def claim(self, replica_id: int, generation: int) -> bool:
        self.asked.append((replica_id, generation))
        return self.granted


@pytest.mark.django_db
def test_the_agent_applies_a_document_without_a_query(
    enrolled: Hosts,
    tenant: Tenant,
    make_app: Any,
    tmp_path: Any,
    django_assert_num_queries: Any,
) -> None:
    """hostpanel/agent/remote.py on a fake engine: it runs what the document says, removes what
    it does not name (or names at another generation), restarts by policy, stops on request and
    fails a replica whose tenant network the document lacks, all without one database query."""
    web = make_app(tenant, replicas=2, restart_policy="always")
    sa = Host.objects.get(name="sa")
    Replica.objects.filter(app=web).update(host=sa)
    engine = FakeEngine()
    engine.images.references.add("busybox:latest")
    claims = Claims()
    stray = engine.run(ContainerSpec(image="busybox:latest", name="acme-web-9", tenant="acme", labels={}))

    def apply(doc: dict[str, Any]) -> tuple[remote.ReconcileReport, dict[int, dict[str, Any]]]:
        doc = json.loads(json.dumps(doc))  # what travels: JSON only
        report = remote.ReconcileReport()
        with django_assert_num_queries(0):
            states = remote.apply(engine, claims, doc, tmp_path, report)  # type: ignore[arg-type]
        return report, {s["replica"]: s for s in states}

    first, second = Replica.objects.filter(app=web).order_by("index")
    report, states = apply(desired.host_document(sa))
    assert sorted(report.started) == ["acme-web-0", "acme-web-1"] and stray.id in engine.containers
    assert {s["state"] for s in states.values()} == {"running"}
    assert states[first.pk]["engine_id"] == engine.get("acme-web-0").id

    engine.crash("acme-web-0")
    Replica.objects.filter(pk=second.pk).update(generation=second.generation + 1)  # placed anew
    report, states = apply(desired.host_document(sa))
    assert report.restarted == ["acme-web-0"] and report.removed == ["acme-web-1"]
    assert report.started == ["acme-web-1"]  # made again, labelled with its new generation
    assert engine.get("acme-web-1").labels["org.hostpanel.generation"] == str(second.generation + 1)

    Replica.objects.filter(pk=first.pk).update(stop_requested=True)
    Replica.objects.filter(pk=second.pk).update(host=None)  # moved away
    report, states = apply(desired.host_document(sa))
    assert report.stopped == ["acme-web-0"] and report.removed == ["acme-web-1"]
    assert list(states) == [first.pk] and states[first.pk]["state"] == "stopped"

    # a new spec for a running container: replaced only with the claim (one of an app at a time)
    Replica.objects.filter(pk=first.pk).update(stop_requested=False)
    apply(desired.host_document(sa))
    running = engine.get("acme-web-0")
    doc = desired.host_document(sa)
    doc["replicas"][0]["digest"] = "a-new-release"
    claims.granted = False
    report, states = apply(doc)
    assert claims.asked == [(first.pk, first.generation)] and engine.get("acme-web-0").id == running.id
    assert report.retry_in == 1.0 and states[first.pk]["state"] == "running"
    claims.granted = True
    report, states = apply(doc)
    assert report.removed == ["acme-web-0"] and report.started == ["acme-web-0"]
    assert engine.get("acme-web-0").id != running.id

    doc = desired.host_document(sa)
    engine.stop("acme-web-0")
    doc["replicas"][0] |= {
        "running": True,
        "digest": "other",
        "networks": [{"name": "n", "engine_name": "x"}],
    }
    report, states = apply(doc)
    assert report.failed == ["acme-web-0"]
    assert states[first.pk]["message"] == "tenant network n is not in this host's document"


@pytest.mark.django_db
def test_one_replica_of_an_app_is_replaced_at_a_time_across_hosts(
    enrolled: Hosts, tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    placed = spread(tenant, make_app, admin_actor)
    mine, theirs = placed["sa"][0], placed["sb"][0]  # web-0 on sa, web-1 on sb
    a, b = as_host(enrolled["sa"][1]), as_host(enrolled["sb"][1])

    def claim(client: APIClient, replica: Replica, **extra: Any) -> Any:
        body = {"replica": replica.pk, "generation": replica.generation, **extra}
        return client.post("/internal/v1/host/claim", body, format="json")

    assert claim(a, mine).json() == {"granted": True}
    assert Replica.objects.get(pk=mine.pk).state == "updating"
    assert claim(b, theirs).json() == {"granted": False}  # web-0 is being replaced on sa
    refused = claim(b, mine)  # another host's replica
    assert refused.status_code == 404 and refused.json()["error"]["message"] == f"No such replica: {mine.pk}"
    assert claim(a, mine, generation=mine.generation + 1).status_code == 404  # placed anew meanwhile
    assert claim(a, mine, host="sb").status_code == 400
    assert APIClient().post("/internal/v1/host/claim", {}, format="json").status_code == 401
