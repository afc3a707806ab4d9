"""Stacks' fixtures: the advance task is recorded, not sent (end to end it is sent)."""

from __future__ import annotations

import pytest

from tests.hostpanel.builds.conftest import sent_builds  # noqa: F401  (builds stacks start are recorded)


@pytest.fixture(autouse=True)
def sent_advances(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.stacks.dispatch.send_advance", lambda stack_id, countdown=0.0: sent.append(stack_id)
        )
    return sent
