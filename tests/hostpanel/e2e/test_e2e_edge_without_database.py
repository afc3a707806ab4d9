"""The edge proxy on an enrolled agent: a real Caddy, busybox httpd.

The agent joins the real panel over HTTPS (the fixtures of test_e2e_enrollment.py) with NO
``DATABASE_URL`` in its environment and this host's Caddy admin socket: it loads Caddy's config
and serves the routing tables the panel sends to its queue (the ``apply_routes`` task), the first
one in answer to its ``POST /internal/v1/host/start``. A request with the app's hostname reaches
the app's container through Caddy; restarted without the table it kept on disk, the agent gets the
last one again from its start.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.runtime.model import ExecSpec
from tests.hostpanel.e2e.test_e2e_edge import get, site
from tests.hostpanel.e2e.test_e2e_enrollment import panel  # noqa: F401
from tests.stack import Caddy, Panel, remove_agent_leftovers, start_without_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("privileged")]


def test_an_agent_without_the_database_serves_an_app_through_caddy(
    panel: Panel,  # noqa: F811
    caddy: Caddy,
    tmp_path: Path,
) -> None:
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import Replica
    from hostpanel.edge.models import PublishedRoutes
    from hostpanel.hosts import services as hosts
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    var = tmp_path / "var-edgenodb"  # its edge keeps its table under <var>/edge/<name>
    agent = start_without_database(panel, "edgenodb", tmp_path, env=caddy.agent_env())
    engine, log = agent.engine, agent.log
    try:
        wait_for(lambda: "loaded the proxy config into caddy" in log.read_text(), 30, "caddy's config")

        admin = Actor(UserFactory(username="en-admin", is_staff=True, is_superuser=True))
        tenant = tenants.create_tenant(admin, "edgeco")
        spec = deployments.AppSpec(image="busybox:latest", command=site("hello-edgeco"), http_port=8080)
        app = deployments.create_app(admin, tenant, "site", spec)

        def ready() -> bool:
            hosts.watch_hosts()  # the panel's placement (manage.py watchhosts)
            mine = Replica.objects.filter(app=app, host__name="edgenodb")
            return mine.filter(state="running", ready=True).exists()

        wait_for(ready, 60, f"the replica to run and be ready on edgenodb\n{agent.log_tail()}")
        replica = Replica.objects.get(app=app)
        shown = engine.exec(replica.container_name, ExecSpec(command=("hostname",)), stdout=subprocess.PIPE)
        out, _ = shown.communicate(timeout=30)
        answer = f"hello-edgeco {out.decode().strip()}"

        def served() -> bool:
            status, body = get(caddy.http_port, "site-edgeco.localhost")
            return status == 200 and body.strip() == answer  # the container's own page

        wait_for(served, 40, f"the app through caddy\n{agent.log_tail()}\n{caddy.log_tail()}")
        assert get(caddy.http_port, "nobody.localhost")[0] >= 500  # an unknown name: nothing
        assert "ImproperlyConfigured" not in log.read_text()  # no query was tried

        # Restarted without the table it kept: its start gets it the last one first (a publish
        # sends only a newer table, after a change), and the app answers again.
        generation = PublishedRoutes.objects.get(pk=1).generation
        agent.stop()
        agent.proc = None
        kept = var / "edge" / "edgenodb" / "routes.json"
        assert kept.resolve().is_relative_to(tmp_path.resolve())
        kept.unlink()
        before = len(log.read_text())
        agent.start()
        wait_for(served, 40, f"the app through caddy after a restart\n{agent.log_tail()}")
        again = log.read_text()[before:]
        assert f"routes generation {generation} applied" in again, again[-3000:]
        assert "ImproperlyConfigured" not in log.read_text()
    finally:
        agent.stop()
        remove_agent_leftovers(agent)
