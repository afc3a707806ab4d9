"""End to end: deleting a tenant purges it on an enrolled agent.

The agent joins the real panel over HTTPS (test_e2e_enrollment.start_without_database) with NO
``DATABASE_URL`` in its environment, and reconciles only every 10 minutes: the ``purge_tenant``
task the panel sends to its queue wakes a reconcile, whose desired document names the tenant
(``purge_tenants``); the agent purges it from its engine (containers, volumes, images of the
tenant) and sends the outcome with ``POST /internal/v1/host/purged``; its row goes and the slug is
free again. Another tenant's container, volume and image on the same engine stay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostpanel.e2e.test_e2e_enrollment import panel  # noqa: F401
from tests.hostpanel.e2e.test_e2e_panel import admin_client
from tests.hostpanel.e2e.test_e2e_tenant_purge import give, holds
from tests.stack import Panel, remove_agent_leftovers, start_without_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("privileged")]


def test_an_agent_without_the_database_purges_a_deleted_tenant(panel: Panel, tmp_path: Path) -> None:  # noqa: F811
    from hostpanel.deployments.models import Replica
    from hostpanel.hosts import services as hosts
    from hostpanel.hosts.models import TenantPurge

    # its periodic reconcile is far away: the task on its queue wakes the one that purges
    agent = start_without_database(panel, "purgenodb", tmp_path, "--reconcile-interval", "600")
    engine = agent.engine
    try:
        for slug in ("gone", "kept"):
            give(slug)
            engine.images.tag("busybox:latest", f"{slug}/app:v1")  # an image the tenant has here

        def running() -> bool:
            hosts.watch_hosts()  # the panel's placement (manage.py watchhosts)
            return bool(Replica.objects.filter(host__name="purgenodb", state="running").count() == 2)

        wait_for(running, 60, f"both tenants' replicas to run on purgenodb\n{agent.log_tail()}")
        assert holds(agent, "gone") and holds(agent, "kept")
        kept = sorted(holds(agent, "kept"))

        assert admin_client().delete("/api/v1/tenants/gone/").status_code == 204
        wait_for(
            lambda: not TenantPurge.objects.filter(host__name="purgenodb").exists(),
            60,
            f"the purge on purgenodb\n{agent.log_tail()}",
        )
        assert holds(agent, "gone") == []
        assert sorted(holds(agent, "kept")) == kept
        assert engine.image("kept/app:v1") and engine.get(Replica.objects.get().container_name).is_running
        assert "purged tenant gone" in agent.log.read_text()
        assert "ImproperlyConfigured" not in agent.log.read_text()  # no query was tried
        assert admin_client().post("/api/v1/tenants/", {"slug": "gone"}, format="json").status_code == 201
    finally:
        agent.stop()
        remove_agent_leftovers(agent)
