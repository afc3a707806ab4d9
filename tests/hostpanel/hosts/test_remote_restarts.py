"""The agent: restarts asked for on the panel (agent/remote.py).

A restart of the app raises its ``restart_generation``: the document carries it, the agent
restarts the container and reports the generation it did. A restart of one container sets the
replica's ``restart_requested``: the agent takes it with ``POST host/claim`` (``restart: true``)
before restarting, so it is done once. Each cycle is the real round trip through the internal API
(tests/hostpanel/hosts/enrolled_hosts.py), the agent itself making no database query; a host
cannot take another host's request nor claim a restart the app never asked for.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import Replica
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import Agent, PanelClaims, as_host, place

pytestmark = pytest.mark.django_db
Hosts = dict[str, tuple[X25519PrivateKey, str]]


def test_an_app_restart_restarts_its_container_once(
    agent: Agent, tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    replica = place(make_app(tenant))
    report, _ = agent.cycle()
    assert report.started == ["acme-web-0"]
    first = agent.engine.get("acme-web-0").started_at
    app = deployments.restart(admin_actor, replica.app)
    assert app.restart_generation == 1
    report, states = agent.cycle()
    assert report.restarted == ["acme-web-0"] and states[replica.pk]["restart_generation"] == 1
    assert agent.engine.get("acme-web-0").started_at != first
    replica.refresh_from_db()
    assert (replica.restart_generation, replica.state) == (1, "running")
    report, states = agent.cycle()  # done: not again
    assert report.restarted == [] and "restart_generation" not in states[replica.pk]


def test_a_container_restart_is_claimed_then_done_once(
    agent: Agent, tenant: Tenant, make_app: Any, admin_actor: Any, enrolled: Hosts
) -> None:
    replica = place(make_app(tenant, replicas=1))
    agent.cycle()
    deployments.container_action(admin_actor, replica, "restart")
    assert Replica.objects.get(pk=replica.pk).restart_requested
    claims = PanelClaims(as_host(enrolled["sa"][1]))
    report, _ = agent.cycle(claims)
    assert report.restarted == ["acme-web-0"] and claims.asked == [(replica.pk, True)]
    assert not Replica.objects.get(pk=replica.pk).restart_requested
    report, _ = agent.cycle(claims)
    assert report.restarted == [] and claims.asked == [(replica.pk, True)]  # nothing left to take


def test_a_host_cannot_take_anothers_restart_nor_claim_one_never_asked(
    enrolled: Hosts, tenant: Tenant, make_app: Any, admin_actor: Any
) -> None:
    replica = place(make_app(tenant), host="sa")
    deployments.container_action(admin_actor, replica, "restart")
    other = as_host(enrolled["sb"][1])
    body = {"replica": replica.pk, "generation": replica.generation, "restart": True}
    answer = other.post("/internal/v1/host/claim", body, format="json")
    assert answer.status_code == 404 and Replica.objects.get(pk=replica.pk).restart_requested
    mine = as_host(enrolled["sa"][1])
    for bad in ({**body, "restart": "yes"}, {**body, "restart": 1}):
        refused = mine.post("/internal/v1/host/claim", bad, format="json")
        assert refused.status_code == 400 and "restart" in refused.content.decode(), refused.content
    assert Replica.objects.get(pk=replica.pk).restart_requested

    entry = {"replica": replica.pk, "generation": replica.generation, "state": "running"}
    answer = mine.post(
        "/internal/v1/host/report", {"replicas": [entry | {"restart_generation": 7}]}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["ignored"] == [replica.pk]  # the app asked none
    assert Replica.objects.get(pk=replica.pk).restart_generation == 0
    refused = mine.post(
        "/internal/v1/host/report", {"replicas": [entry | {"restart_generation": -1}]}, format="json"
    )
    assert refused.status_code == 400 and "restart_generation" in refused.content.decode()
    taken = mine.post("/internal/v1/host/claim", body, format="json")
    assert taken.status_code == 200 and taken.json()["granted"] is True
    again = mine.post("/internal/v1/host/claim", body, format="json")
    assert again.json()["granted"] is False and not Replica.objects.get(pk=replica.pk).restart_requested
