"""Tasks sent to agents by name subscribe to a result only when the panel waits for it.

Celery's ``send_task`` subscribes to the result channel of every task it sends unless told to
ignore the result; an enrolled agent sends tasks too, and its Redis user may not SUBSCRIBE
(tests/hostpanel/e2e/test_e2e_enrollment.py checks the ACL log stays empty).
"""

from __future__ import annotations

from typing import Any

import pytest

from hostpanel.hosts import dispatch
from hostpanel.hosts.models import Host


class Sent(Exception):
    pass


@pytest.mark.django_db
def test_fire_and_forget_ignores_results_and_an_ask_does_not(
    monkeypatch: pytest.MonkeyPatch, host: Host
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def send_task(name: str, **options: Any) -> Any:
        calls.append((name, options))
        if options.get("task_id"):
            raise Sent  # an ask: stop before it would wait
        return None

    monkeypatch.setattr(dispatch.app, "send_task", send_task)
    # (send_reconcile, send_build, send_routes and send_purge_tenant are replaced by the panel
    # tests' conftest: their senders go through the same dispatch.send / ignore_result=True.)
    dispatch.send("reconcile_host", args=[1], queue="host.h1")
    dispatch.send_start_copy("host.h1", expires=5)
    with pytest.raises(Sent):
        dispatch.fetch_stats(1, "host.h1")
    *fire, (asked, ask_options) = calls
    assert [name.rsplit(".", 1)[1] for name, _ in fire] == [
        "reconcile_host",
        "start_copy",
    ]
    assert all(options.get("ignore_result") is True for _, options in fire), fire
    assert asked.endswith("container_stats") and ask_options["ignore_result"] is False
