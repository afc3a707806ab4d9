"""The task of the build workers (queue ``build.<host>``). Thin: reload the row and run it (build_rows.py),
or, on an enrolled agent without the database, run it through the internal API (remote_build.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from celery import shared_task
from django.conf import settings

from hostpanel.agent import build_rows, credentials, host_secrets, remote_build
from hostpanel.agent import reconcile as agent
from hostpanel.builds.models import Build

log = logging.getLogger(__name__)


@shared_task(acks_late=False, ignore_result=True)
def run_build(build_id: int) -> None:
    """Run a queued build on this host's engine (a build that is no longer queued is left alone)."""
    config = agent.AgentConfig.from_env()
    if settings.AGENT_WITHOUT_DATABASE:  # the panel says whether it is this host's (its claim)
        if config is not None:
            creds = credentials.load(Path(os.environ[host_secrets.ENV_STATE_DIR]))
            engine = agent.engine_for(config.engine_root, config.instance)
            remote_build.run_remote_build(build_id, engine, credentials.client_for(creds))
        return
    build = Build.objects.filter(pk=build_id).select_related("tenant", "host", "created_by").first()
    if config is None or build is None or build.host is None or build.host.name != config.name:
        log.warning(
            "run_build(%s) reached agent %s: not its build, ignored", build_id, config and config.name
        )
        return
    build_rows.execute_build(build, agent.engine_for(config.engine_root, config.instance))
