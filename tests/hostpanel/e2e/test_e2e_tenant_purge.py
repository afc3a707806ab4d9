"""End to end: deleting a tenant through the API purges it on every host, through real agents; a host
that was down purges it when it comes back, and only then may a new tenant take the slug."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hostpanel.hosts.models import Host, TenantPurge
from tests.hostpanel.e2e.conftest import GRACE_SECONDS, Agent, wait_for
from tests.hostpanel.e2e.test_e2e_panel import admin_client, running, tenant_with_token

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]


def holds(agent: Agent, slug: str) -> list[str]:
    """What the agent's engine still holds of tenant ``slug``."""
    engine = agent.engine
    found = [f"container {c.name}" for c in engine.list(all=True) if c.tenant == slug]
    found += [f"volume {v.name}" for v in engine.volume_list(slug)]
    found += [f"network {n.name}" for n in engine.network_list(slug)]
    found += [f"image {t}" for i in engine.images.list() for t in i.repo_tags if t.startswith(f"{slug}/")]
    if slug in engine.containers.id_ranges.all():
        found.append("uid range")
    return found


def give(slug: str, replicas: int = 1) -> None:
    """Through the API: tenant ``slug``, a volume of it and an app writing to it (``replicas``)."""
    api = tenant_with_token(slug)
    base = f"/api/v1/tenants/{slug}"
    volume = {"name": "data", "size_bytes": 16 * 1024**2}
    assert api.post(f"{base}/volumes/", volume, format="json").status_code == 201
    app = {
        "name": "db",
        "image": "busybox:latest",
        "command": ["sh", "-c", "echo s3cret > /data/f; sleep 3600"],
        "volumes": [{"name": "data", "path": "/data"}],
        "network": "bridge",
        "replicas": replicas,
        "networks": [],  # the agents share this machine's network stack: no tenant network spans them
    }
    assert api.post(f"{base}/apps/", app, format="json").status_code == 201


def test_delete_purges_up_hosts_now_and_a_down_host_when_it_returns(agents: Callable[[str], Agent]) -> None:
    h1, h2 = agents("e2e-pa"), agents("e2e-pb")
    wait_for(lambda: Host.objects.filter(state="up").count() == 2, 30, "both agents to register")
    give("gone", replicas=2)
    wait_for(
        lambda: len(running(h1)) == 1 and len(running(h2)) == 1, 60, f"one replica each\n{h2.log_tail()}"
    )
    h2.engine.images.tag("busybox:latest", "gone/app:v1")  # an image the tenant had on that host

    h2.stop()
    wait_for(
        lambda: Host.objects.filter(name="e2e-pb", state="down").exists(), GRACE_SECONDS + 15, "e2e-pb down"
    )
    assert admin_client().delete("/api/v1/tenants/gone/").status_code == 204
    wait_for(
        lambda: not TenantPurge.objects.filter(host__name="e2e-pa").exists(),
        60,
        f"the purge\n{h1.log_tail()}",
    )
    assert holds(h1, "gone") == []
    assert holds(h2, "gone") != []  # down: nothing reached it yet
    r = admin_client().post("/api/v1/tenants/", {"slug": "gone"}, format="json")
    assert r.status_code == 409 and "e2e-pb" in r.json()["error"]["message"]

    h2.start()
    wait_for(lambda: not TenantPurge.objects.exists(), 60, f"e2e-pb to purge on its return\n{h2.log_tail()}")
    assert holds(h2, "gone") == []
    assert admin_client().post("/api/v1/tenants/", {"slug": "gone"}, format="json").status_code == 201
