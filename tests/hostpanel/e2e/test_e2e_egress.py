"""End to end: the egress allow-list an admin sets on a tenant's quota reaches the host's firewall.

A real host agent (Celery worker) runs two tenants' containers on bridge
networks; the LAN host and the metadata address are network namespaces this
test creates (tests/netsim.py), so no packet leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from tests.hostpanel.e2e.conftest import Agent, wait_for
from tests.hostpanel.factories import UserFactory
from tests.netsim import PORT, connects, simulated_world

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]


def test_admin_allow_list_opens_the_lan_for_one_tenant_only(
    agents: Callable[[str], Agent], tmp_path: Path
) -> None:
    h1 = agents("e2e-egress")
    wait_for(lambda: Host.objects.filter(name="e2e-egress", state="up").exists(), 30, "the agent to register")
    admin = APIClient()
    admin.force_authenticate(UserFactory(username="egress-admin", is_staff=True, is_superuser=True))
    for slug in ("lanco", "other"):
        UserFactory(username=f"{slug}-owner")
        r = admin.post("/api/v1/tenants/", {"slug": slug, "owner": f"{slug}-owner"}, format="json")
        assert r.status_code == 201
    r = admin.patch("/api/v1/tenants/lanco/quota/", {"egress_allow": ["10.250.77.0/30"]}, format="json")
    assert r.status_code == 200, r.json()
    with simulated_world(tmp_path) as world:
        for slug in ("lanco", "other"):
            app = {
                "name": "app",
                "image": "busybox:latest",
                "command": ["sleep", "3600"],
                "network": "bridge",
            }
            r = admin.post(f"/api/v1/tenants/{slug}/apps/", app, format="json")
            assert r.status_code == 201, r.json()
        wait_for(
            lambda: Replica.objects.filter(state="running").count() == 2,
            60,
            f"both containers to run\n{h1.log_tail()}",
        )
        ids = {r.app.tenant.slug: r.engine_id for r in Replica.objects.select_related("app__tenant")}
        lan, metadata, internet = world["lan"], world["metadata"], world["internet"]
        assert connects(h1.engine, ids["lanco"], lan.address, PORT, lan.marker)
        assert not connects(h1.engine, ids["other"], lan.address, PORT, lan.marker)
        for slug in ("lanco", "other"):
            assert not connects(h1.engine, ids[slug], metadata.address, PORT, metadata.marker), slug
            assert connects(h1.engine, ids[slug], internet.address, PORT, internet.marker), slug
        # the admin takes it back: the host follows
        r = admin.patch("/api/v1/tenants/lanco/quota/", {"egress_allow": []}, format="json")
        assert r.status_code == 200
        wait_for(lambda: h1.engine.tenant_egress_allow("lanco") == (), 30, "the host to drop the allow-list")
        assert not connects(h1.engine, ids["lanco"], lan.address, PORT, lan.marker)
