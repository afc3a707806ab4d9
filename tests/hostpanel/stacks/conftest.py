"""Stacks' fixtures: an advance asked for is recorded, not run (end to end it runs)."""

from __future__ import annotations

import pytest

from tests.hostpanel.builds.conftest import sent_builds  # noqa: F401  (builds stacks start are recorded)


@pytest.fixture(autouse=True)
def sent_advances(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr("hostpanel.stacks.dispatch.send_advance", lambda stack_id: sent.append(stack_id))
    return sent
