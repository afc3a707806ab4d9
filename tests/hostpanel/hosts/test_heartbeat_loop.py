"""The host agent's heartbeat loop: it beats, and it is the one log rotator of its engine."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hostpanel.hosts.management.commands.hostagent import Command
from hostpanel.hosts.models import Host


@pytest.mark.django_db(transaction=True)
def test_each_beat_rotates_logs_and_a_failing_rotation_does_not_stop_the_beat(host: Host) -> None:
    stop = threading.Event()
    calls: list[int] = []

    def rotate_logs() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk trouble")  # logged; the loop goes on
        stop.set()
        return 0

    before = Host.objects.get(pk=host.pk).last_heartbeat
    Command._heartbeat_loop(host.pk, host.queue, 0.01, {}, stop, rotate_logs)
    assert len(calls) == 2
    after: Any = Host.objects.get(pk=host.pk).last_heartbeat
    assert after is not None and (before is None or after >= before)
