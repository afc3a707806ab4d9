"""Live logs from an enrolled agent: a real container, a real WebSocket client.

The agent joins the real panel over HTTPS (the fixtures of test_e2e_enrollment.py) with no
``DATABASE_URL``, ``REDIS_URL`` nor the panel's secret key in its environment, and follows logs as
its own Redis ACL user on its own channels (hostpanel/logstream/layer.py). A busybox container
prints ``seq N`` every 100 ms; a WebSocket client (tests/ws_viewer.py: autobahn) signed in as a
viewer of the tenant connects through the panel's HTTPS front (Caddy, then daphne) and gets the
backfill, then live lines with no gap.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client

from tests.hostpanel.e2e.test_e2e_enrollment import deploy_on
from tests.hostpanel.logstream.test_e2e_logs import COUNTER, numbers
from tests.stack import REPO, Panel, remove_agent_leftovers, serve_panel, start_without_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("privileged")]


@pytest.fixture
def panel(
    transactional_db: None,
    celery_to: str,
    redis_url: str,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Panel]:
    """The panel behind HTTPS, with this process's secret key (so a session made here signs in there)."""
    monkeypatch.setenv("HOSTPANEL_SECRET_KEY", settings.SECRET_KEY)
    with serve_panel(tmp_path, settings, redis_url) as served:
        yield served


def watch_logs(panel: Panel, path: str, session: str, live: int) -> list[dict[str, Any]]:
    """The messages of ``wss://<panel><path>`` (tests/ws_viewer.py) until ``live`` lines after "ready"."""
    url = "wss://" + urlsplit(panel.url).netloc + path
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={session}"
    viewer = subprocess.run(
        [sys.executable, "-m", "tests.ws_viewer", url, str(panel.ca_file), cookie, str(live)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert viewer.returncode == 0, viewer.stdout[-3000:] + viewer.stderr[-3000:]
    return [json.loads(line) for line in viewer.stdout.splitlines()]


def test_a_viewer_follows_the_live_log_of_a_container_on_an_agent_without_the_database(
    panel: Panel, tmp_path: Path, redis_url: str
) -> None:
    from hostpanel.tenants.models import Role

    agent = start_without_database(panel, "logsnodb", tmp_path)
    engine = agent.engine
    try:
        viewer, replica = deploy_on(agent, "logco", "ln-viewer", Role.VIEWER, ["sh", "-c", COUNTER])
        log_file = engine.containers.log_path(engine.get(replica.container_name))
        wait_for(lambda: "seq 10\n" in log_file.read_text(), 30, "the container's first lines")

        browser = Client()
        browser.force_login(viewer)
        session = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
        messages = watch_logs(panel, f"/ws/logs/{replica.pk}/?tail=5", session, 10)
        ready = next(i for i, m in enumerate(messages) if m["type"] == "ready")
        backfill = [x for m in messages[:ready] for x in m["lines"]]
        assert len(backfill) == 5, messages[:ready]  # the tail, from the agent's answer
        lines = [x for m in messages if m["type"] == "lines" for x in m["lines"]]
        seen = numbers(lines)
        assert seen == list(range(seen[0], seen[-1] + 1)), "a gap or a repeat between backfill and live lines"
        live = [x for m in messages[ready + 1 :] for x in m["lines"]]
        assert len(live) >= 10 and seen[0] >= 6 and numbers(live)[0] > numbers(backfill)[-1]

        # the follower is subscribed as the host's own Redis user, to its own channels only
        clients = redis.Redis.from_url(redis_url).client_list()
        assert any(c["user"] == "host-logsnodb" and int(c["sub"]) > 0 for c in clients), clients
        admin_redis = redis.Redis.from_url(redis_url)
        channels = {c.decode() for c in admin_redis.pubsub_channels("hostlogs.logsnodb.*")}
        assert "hostlogs.logsnodb.__group__logagent" in channels, channels
        text = agent.log.read_text(errors="replace")
        assert "log follower failed" not in text and "NOPERM" not in text, agent.log_tail()
        assert not re.search(r"ImproperlyConfigured", text)  # no query was tried
    finally:
        agent.stop()
        remove_agent_leftovers(agent)
