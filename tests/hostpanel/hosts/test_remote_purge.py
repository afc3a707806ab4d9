"""Tenant purges of an enrolled agent (agent/remote.py, agent/tenant_purge.py).

The desired document names the deleted tenants the calling host should purge now
(``purge_tenants``: its own pending :class:`TenantPurge` rows, a failed one again after the
resend delay of a purge task); the agent purges each from its engine and sends the outcomes with
``POST /internal/v1/host/purged``, which clears or keeps the caller's own rows with
hosts.services.record_purge. A host never sees nor clears another host's purges;
a hostile body is a 400 that changes nothing; only a live host token gets in. The agent is the
real ``remote.reconcile`` with its real client, its calls going to the panel in this process
(enrolled_hosts.PanelClient), without one query of its own: on a fake engine, and on a real
engine (privileged) whose tenant's containers, volumes, images, build cache, quota and uid range
go while another tenant's stay. The real agent process doing it:
tests/hostpanel/e2e/test_e2e_tenant_purge_without_database.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.utils import timezone
from rest_framework.test import APIClient

from engine.engine import Engine
from engine.errors import Conflict as EngineConflict
from engine.purge import PurgeReport
from hostpanel.audit.services import Actor
from hostpanel.errors import Conflict
from hostpanel.hosts import enrollment
from hostpanel.hosts import services as hosts
from hostpanel.hosts.models import Host, TenantPurge
from hostpanel.tenants import services as tenants
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.conftest import require_privileged
from tests.engine.conftest import leaks
from tests.hostpanel.factories import MembershipFactory
from tests.hostpanel.hosts.enrolled_hosts import PanelClient, as_host, reconcile
from tests.hostpanel.hosts.fake_engine import FakeEngine
from tests.hostpanel.tenants.test_tenant_delete_purge import give, holds

Hosts = dict[str, tuple[X25519PrivateKey, str]]
PURGED = "/internal/v1/host/purged"


def rows() -> list[tuple[str, str, int, str, bool]]:
    """Every purge row: (host, slug, attempts, last error, attempted)."""
    found = TenantPurge.objects.order_by("host__name", "tenant_slug")
    return [
        (p.host.name, p.tenant_slug, p.attempts, p.last_error, p.attempted_at is not None)
        for p in found.select_related("host")
    ]


def pending(*pairs: tuple[str, str]) -> None:
    """Purge rows for (host, slug) pairs, in this order of request."""
    for name, slug in pairs:
        TenantPurge.objects.create(host=Host.objects.get(name=name), tenant_slug=slug)


def purges_of(client: APIClient) -> list[str]:
    answer = client.get("/internal/v1/host/desired")
    assert answer.status_code == 200, answer.content
    names: list[str] = answer.json()["purge_tenants"]
    return names


@pytest.mark.django_db
def test_a_hosts_document_names_only_its_own_purges_due_now(
    enrolled: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending(("sa", "gone"), ("sb", "bgone"), ("sa", "old"), ("sb", "gone"))
    a, b = as_host(enrolled["sa"][1]), as_host(enrolled["sb"][1])
    assert purges_of(a) == ["gone", "old"]
    assert purges_of(b) == ["bgone", "gone"]

    # a failed purge: named again once the purge task's resend delay has passed
    hosts.record_purge(Host.objects.get(name="sa"), "gone", "processes still run")
    assert purges_of(a) == ["old"] and purges_of(b) == ["bgone", "gone"]
    late = timezone.now() - timedelta(seconds=hosts.PURGE_RESEND_SECONDS + 1)
    TenantPurge.objects.filter(host__name="sa", tenant_slug="gone").update(attempted_at=late)
    assert purges_of(a) == ["gone", "old"]

    monkeypatch.setattr(hosts, "PURGES_PER_DOCUMENT", 1)  # a bounded list, the oldest first
    assert purges_of(a) == ["gone"] and purges_of(b) == ["bgone"]


@pytest.mark.django_db
def test_a_host_clears_only_its_own_purges(enrolled: Hosts) -> None:
    pending(("sa", "gone"), ("sa", "busy"), ("sb", "gone"), ("sb", "bonly"))
    a = as_host(enrolled["sa"][1])
    body = {"purged": ["gone", "bonly", "never"], "failed": {"busy": "processes still run", "ghost": "x"}}
    answer = a.post(PURGED, body, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"purged": ["gone"], "failed": ["busy"], "ignored": ["bonly", "never", "ghost"]}
    failed_elsewhere = a.post(PURGED, {"failed": {"bonly": "made up"}}, format="json")
    assert failed_elsewhere.json() == {"purged": [], "failed": [], "ignored": ["bonly"]}
    assert rows() == [
        ("sa", "busy", 1, "processes still run", True),
        ("sb", "bonly", 0, "", False),  # another host's: never written
        ("sb", "gone", 0, "", False),
    ]
    with pytest.raises(Conflict, match="sb"):  # sb still holds the old tenant's things
        hosts.check_slug_free("gone")

    again = a.post(PURGED, {"purged": ["gone", "busy"]}, format="json")
    assert again.json() == {"purged": ["busy"], "failed": [], "ignored": ["gone"]}  # done already
    b = as_host(enrolled["sb"][1])
    assert b.post(PURGED, {"purged": ["gone", "bonly"]}, format="json").json()["purged"] == ["gone", "bonly"]
    assert rows() == []
    hosts.check_slug_free("gone")


@pytest.mark.django_db
def test_hostile_bodies_and_callers_are_refused_and_change_nothing(enrolled: Hosts, tenant: Tenant) -> None:
    pending(("sa", "gone"), ("sb", "gone"))
    before = rows()
    client = as_host(enrolled["sa"][1])

    def refused(body: Any, word: str) -> None:
        answer = client.post(PURGED, body, format="json")
        assert answer.status_code == 400 and word in answer.content.decode(), (word, answer.content)

    refused({"purged": ["gone"], "host": "sb"}, "unknown")
    refused({"purged": "gone"}, "purged")
    refused({"purged": None}, "purged")
    refused({"purged": [1]}, "purged")
    refused({"purged": [["gone"]]}, "purged")
    refused({"purged": ["Gone; DROP"]}, "not a tenant slug")
    refused({"purged": ["../gone"]}, "not a tenant slug")
    refused({"purged": ["g" * 64]}, "purged")
    refused({"purged": ["gone", "gone"]}, "at most once")
    refused({"purged": [f"t{i}" for i in range(hosts.PURGES_PER_DOCUMENT + 1)]}, "purged")
    refused({"failed": ["gone"]}, "failed")
    refused({"failed": {"gone": 5}}, "failed")
    refused({"failed": {"gone": None}}, "failed")
    refused({"failed": {"gone": ""}}, "failed")
    refused({"failed": {"gone": "e" * (hosts.PURGE_ERROR_MAX + 1)}}, "failed")
    refused({"failed": {"Gone!": "e"}}, "not a tenant slug")
    refused({"failed": {"g" * 100_000: "e"}}, "not a tenant slug")
    refused({"failed": {f"t{i}": "e" for i in range(hosts.PURGES_PER_DOCUMENT + 1)}}, "at most")
    refused({"purged": ["gone"], "failed": {"gone": "e"}}, "purged and failed at once")
    refused([{"purged": ["gone"]}], "")
    assert rows() == before

    # only a live host's token: none, a forged one, a tenant's API token, a revoked host's
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    _, secret = create_token(Actor(user=owner), tenant, "automation")
    tenant_token = APIClient()
    tenant_token.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    good = {"purged": ["gone"]}
    for caller in (APIClient(), as_host("hphost_forged"), as_host(secret), tenant_token):
        assert caller.post(PURGED, good, format="json").status_code == 401
        assert caller.get("/internal/v1/host/desired").status_code == 401
    session = APIClient()
    session.force_login(owner)
    assert session.post(PURGED, good, format="json").status_code in (401, 403)
    enrollment.revoke(None, "sa")  # revoked: refused at once
    assert client.post(PURGED, good, format="json").status_code == 401
    assert rows() == before


class PurgingEngine(FakeEngine):
    """The fake engine with tenant purges: each recorded, those of ``busy`` tenants failing."""

    def __init__(self) -> None:
        super().__init__()
        self.purged: list[str] = []
        self.busy: set[str] = set()

    def purge_tenant(self, tenant: str) -> PurgeReport:
        if tenant in self.busy:
            raise EngineConflict(f"tenant {tenant!r}: processes still run")
        self.purged.append(tenant)
        return PurgeReport(tenant=tenant)


@pytest.mark.django_db
def test_the_agent_purges_what_its_document_names_and_the_rows_follow(
    enrolled: Hosts,
    admin_actor: Actor,
    on_commit: Any,
    sent_purges: list[tuple[int, str, str]],
    tmp_path: Path,
) -> None:
    """Deleting tenants makes rows for both hosts; sa's agent (no query of its own) purges its two,
    one fails and is kept with its error, tried again after the resend delay, then cleared; sb's
    rows stay for sb."""
    for slug in ("gone", "busy"):
        made = tenants.create_tenant(admin_actor, slug)
        with on_commit():
            tenants.delete_tenant(admin_actor, made)
    sa = Host.objects.get(name="sa")
    assert {(h, s) for h, _q, s in sent_purges} >= {(sa.pk, "gone"), (sa.pk, "busy")}  # the wake
    engine = PurgingEngine()
    engine.busy.add("busy")
    client = PanelClient(as_host(enrolled["sa"][1]))

    reconcile(engine, client, tmp_path)
    assert engine.purged == ["gone"]
    sent = {"purged": ["gone"], "failed": {"busy": "tenant 'busy': processes still run"}}
    assert ("POST", "host/purged", sent) in client.calls
    assert [(h, s, n, e) for h, s, n, e, _ in rows() if h in ("sa", "sb")] == [
        ("sa", "busy", 1, "tenant 'busy': processes still run"),
        ("sb", "busy", 0, ""),
        ("sb", "gone", 0, ""),
    ]
    reconcile(engine, client, tmp_path)  # not again before the resend delay
    assert engine.purged == ["gone"] and TenantPurge.objects.get(host=sa).attempts == 1

    engine.busy.clear()
    late = timezone.now() - timedelta(seconds=hosts.PURGE_RESEND_SECONDS + 1)
    TenantPurge.objects.filter(host=sa).update(attempted_at=late)
    reconcile(engine, client, tmp_path)
    assert engine.purged == ["gone", "busy"] and not TenantPurge.objects.filter(host=sa).exists()
    assert TenantPurge.objects.filter(host__name="sb").count() == 2
    calls = len(client.calls)
    reconcile(engine, client, tmp_path)  # nothing left: no purge, no call but the document
    assert engine.purged == ["gone", "busy"] and client.calls[calls:] == [("GET", "host/desired", None)]


@pytest.fixture
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A real engine for host sa (fails the test if it leaks)."""
    require_privileged()
    root = tmp_path_factory.mktemp("hppurge")
    eng = Engine(root=root, instance=f"hpt-{secrets.token_hex(4)}")
    eng.images.bootstrap_busybox()
    yield eng
    for container in eng.list(all=True):
        eng.remove(container.id, force=True)
    for network in eng.network_list():
        eng.network_remove(network.name)
    eng.purge_tenant("other")
    assert not leaks(root, eng.instance)


@pytest.mark.privileged
@pytest.mark.django_db
def test_an_agent_without_the_database_purges_a_deleted_tenant_from_a_real_engine(
    enrolled: Hosts, real_engine: Engine, admin_actor: Actor, on_commit: Any, tmp_path: Path
) -> None:
    gone = tenants.create_tenant(admin_actor, "gone")
    tenants.create_tenant(admin_actor, "other")
    give(real_engine, "gone", tmp_path / "gone")  # an image it built and its cache, a volume, a container
    real_engine.network_create("gone-net", tenant="gone")
    give(real_engine, "other", tmp_path / "other")
    assert holds(real_engine, "gone") and holds(real_engine, "other")
    kept = sorted(holds(real_engine, "other"))
    with on_commit():
        tenants.delete_tenant(admin_actor, gone)
    assert sorted(TenantPurge.objects.values_list("host__name", flat=True)) == ["sa", "sb"]

    reconcile(real_engine, PanelClient(as_host(enrolled["sa"][1])), tmp_path / "state")
    assert holds(real_engine, "gone") == []
    assert sorted(holds(real_engine, "other")) == kept and real_engine.image("other/app:v1")
    assert list(TenantPurge.objects.values_list("host__name", flat=True)) == ["sb"]  # sb's own to do
