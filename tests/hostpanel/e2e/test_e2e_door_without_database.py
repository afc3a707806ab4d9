"""``docker exec`` and ``docker cp`` through the tenants' door on an enrolled agent.

The agent joins the real panel over HTTPS (test_e2e_enrollment.start_without_database) with no
``DATABASE_URL`` nor panel ``REDIS_URL``; the door runs in this process
(tests/hostpanel/dockerapi/conftest.py) and talks to the agent's relay and copier on the host's
own pub/sub channels, which the agent uses as its own Redis user. The panel's placement
(``manage.py watchhosts``) runs in a thread of this process.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.hostpanel.dockerapi.conftest import Client, docker_as, door  # noqa: F401
from tests.hostpanel.e2e.test_e2e_enrollment import panel  # noqa: F401
from tests.stack import Agent, Panel, remove_agent_leftovers, start_without_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("privileged")]


@pytest.fixture
def placing() -> Iterator[None]:
    """``manage.py watchhosts`` in a thread: placement, for the door's containers."""
    from hostpanel.hosts import services as hosts

    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.wait(0.5):
                hosts.watch_hosts()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


@pytest.fixture
def nodb_agent(panel: Panel, tmp_path: Path) -> Iterator[Agent]:  # noqa: F811
    agent = start_without_database(panel, "doornodb", tmp_path)
    yield agent
    agent.stop()
    remove_agent_leftovers(agent)


def test_docker_exec_and_cp_on_an_agent_without_the_database(
    nodb_agent: Agent,
    placing: None,
    docker_as: Callable[..., Client],  # noqa: F811
    tmp_path: Path,
) -> None:
    from hostpanel.audit.models import AuditLog
    from tests.hostpanel.factories import MembershipFactory, TenantFactory

    tenant = TenantFactory(slug="dcorp")
    docker = docker_as(MembershipFactory(tenant=tenant, role="developer").user, tenant)
    docker.ok("run", "-d", "--name", "web", "busybox", "sleep", "3600", timeout=180)

    assert docker.ok("exec", "web", "echo", "hi") == "hi\n"  # without -t: framed stdout
    result = docker("exec", "web", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")

    # cp both ways, several windows of chunks, byte for byte
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    docker.ok("cp", str(data), "web:/tmp/data.bin")
    digest = hashlib.md5(data.read_bytes()).hexdigest()
    assert docker.ok("exec", "web", "md5sum", "/tmp/data.bin").split()[0] == digest
    back = tmp_path / "back.bin"
    docker.ok("cp", "web:/tmp/data.bin", str(back))
    assert back.read_bytes() == data.read_bytes()

    entries: Any = AuditLog.objects.filter(tenant=tenant, action="container.exec").order_by("pk")
    messages = [e.message for e in entries]
    assert "command: echo hi; exit code 0 (exited)" in messages, messages
    assert any("exit code 7 (exited)" in m for m in messages), messages
    assert all(e.result == "ok" for e in entries), messages
    copies = [e.message for e in AuditLog.objects.filter(tenant=tenant, action="container.copy")]
    assert any(m.startswith("from web:/tmp/data.bin; done") for m in copies), copies
    text = nodb_agent.log.read_text(errors="replace")
    assert "NOPERM" not in text and "completing the audit entry" not in text, nodb_agent.log_tail()
