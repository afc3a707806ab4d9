"""Stacks' fixtures: the advance task is recorded, not sent (end to end it is sent)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def sent_advances(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.stacks.dispatch.send_advance", lambda stack_id, countdown=0.0: sent.append(stack_id)
        )
    return sent


@pytest.fixture(autouse=True)
def sent_builds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Builds the stacks started, recorded at the builds' seam (not sent to an agent)."""
    sent: list[tuple[int, str]] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.builds.dispatch.send_build", lambda build_id, queue: sent.append((build_id, queue))
        )
    return sent
