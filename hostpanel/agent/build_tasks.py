"""The task of the build workers (queue ``build.<host>``). Thin: run the build through the internal
API (remote_build.py), which claims it first: the panel says whether it is this host's."""

from __future__ import annotations

from celery import shared_task

from hostpanel.agent import credentials, host_engine, host_secrets, remote_build


@shared_task(acks_late=False, ignore_result=True)
def run_build(build_id: int) -> None:
    """Run a queued build on this host's engine (a build that is no longer queued is left alone)."""
    config = host_engine.AgentConfig.from_env()
    state_dir = host_secrets.state_dir()
    if config is None or state_dir is None:
        return
    engine = host_engine.engine_for(config.engine_root, config.instance)
    remote_build.run_remote_build(build_id, engine, credentials.client_for(credentials.load(state_dir)))
