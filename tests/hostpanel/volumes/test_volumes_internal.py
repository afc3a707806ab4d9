"""``POST /internal/v1/host/volumes``: which of the volumes an enrolled host holds were deleted, as
a hostile host would try it (hostpanel/volumes/internal.py, hostpanel/volumes/held.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from hostpanel.audit.services import Actor
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.volumes import held, internal, services
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = pytest.mark.django_db
VOLUMES = "/internal/v1/host/volumes"
GIB = 1024**3


def panel(agents: EnrolledAgents, host: Host) -> APIClient:
    """The internal API as ``host`` (enrolled) calls it."""
    return agents.client(host).panel


def ask(client: APIClient, volumes: dict[str, str]) -> dict[str, Any]:
    answer = client.post(VOLUMES, {"volumes": volumes}, format="json")
    assert answer.status_code == 200, answer.content
    body: dict[str, Any] = answer.json()
    return body


def test_a_host_learns_only_of_the_volumes_it_was_given(
    tenant: Tenant, host: Host, make_app: Any, agents: EnrolledAgents
) -> None:
    dev = Actor(user=MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user)
    ours = services.create_volume(dev, tenant, "data", GIB)
    make_app(tenant, volumes=[{"name": "data", "path": "/data"}])
    other = Volume.objects.create(tenant=TenantFactory(slug="other"), name="theirs", size_bytes=GIB)
    gone = Volume.objects.create(tenant=TenantFactory(slug="third"), name="old", size_bytes=GIB)
    gone_pk = gone.pk
    gone.delete()
    sb = HostFactory(name="sb")
    assert Replica.objects.get().host == host

    (entry,) = agents.client(host).desired()["replicas"]
    (volume,) = entry["volumes"]
    assert (volume["id"], volume["proof"]) == (ours.pk, held.proof(ours.pk))
    document = json.dumps(agents.client(sb).desired())  # another host: nothing of h1's volume
    assert held.proof(ours.pk) not in document and "acme.data" not in document

    assert ask(panel(agents, host), {str(ours.pk): volume["proof"]}) == {"deleted": [], "ignored": []}
    # another host guessing ids, with proofs of its own making: the same answer whether the
    # volume exists, was deleted or never was
    for client in (panel(agents, sb), panel(agents, host)):
        guesses = {str(pk): "0" * 64 for pk in (ours.pk, other.pk, gone_pk, 10**9)}
        guesses[str(other.pk)] = volume["proof"]  # h1's proof is for its own volume only
        answer = ask(client, guesses)
        assert answer == {"deleted": [], "ignored": sorted([ours.pk, other.pk, gone_pk, 10**9])}

    Volume.objects.filter(pk=ours.pk).delete()
    assert ask(panel(agents, host), {str(ours.pk): volume["proof"]}) == {"deleted": [ours.pk], "ignored": []}
    # a host it was never placed on that holds the proof anyway (its data moved there) is told too
    assert ask(panel(agents, sb), {str(ours.pk): volume["proof"]})["deleted"] == [ours.pk]


def test_hostile_bodies_and_callers_are_refused(host: Host, agents: EnrolledAgents) -> None:
    client = panel(agents, host)
    proof = held.proof(1)

    def refused(body: Any, word: str) -> None:
        answer = client.post(VOLUMES, body, format="json")
        assert answer.status_code == 400 and word in answer.content.decode(), (word, answer.content)

    refused({"volumes": {"1": proof}, "host": "sb"}, "unknown")
    refused({}, "volumes")
    refused({"volumes": None}, "volumes")
    refused({"volumes": [1]}, "volumes")
    refused({"volumes": {"1": 5}}, "volumes")
    refused({"volumes": {"1": None}}, "volumes")
    refused({"volumes": {"1": proof.upper()}}, "volumes")
    refused({"volumes": {"1": proof[:-1]}}, "volumes")
    refused({"volumes": {"1": proof + "0"}}, "volumes")
    refused({"volumes": {"0": proof}}, "not a volume id")
    refused({"volumes": {"-1": proof}}, "not a volume id")
    refused({"volumes": {"01": proof}}, "not a volume id")
    refused({"volumes": {"1 ": proof}}, "not a volume id")
    refused({"volumes": {"٣": proof}}, "not a volume id")  # a digit, but not an ASCII one
    refused({"volumes": {str(2**63): proof}}, "not a volume id")
    refused({"volumes": {"x" * 100_000: proof}}, "not a volume id")
    refused({"volumes": {str(i): proof for i in range(1, internal.VOLUMES_MAX + 2)}}, "at most")
    refused([{"volumes": {}}], "")
    assert ask(client, {}) == {"deleted": [], "ignored": []}
    assert APIClient().post(VOLUMES, {"volumes": {}}, format="json").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer hphost_nope")
    assert bad.post(VOLUMES, {"volumes": {}}, format="json").status_code == 401
