"""Shared test gates. Engine fixtures live in tests/engine/conftest.py.

Privileged tests (everything under tests/engine/privileged/, and any test
marked ``@pytest.mark.privileged`` or using the ``privileged`` fixture) need
root and crun. Elsewhere they are skipped with the reason; when the ``CI``
environment variable is set they fail instead, because CI has both and a
silently skipped privileged suite would hide breakage.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PRIVILEGED_DIR = Path(__file__).parent / "engine" / "privileged"
E2E_DIRS = (Path(__file__).parent / "hostpanel" / "e2e", Path(__file__).parent / "browser")
"""Whole-stack tiers: every test below these, and every ``test_*e2e*.py`` file, is marked ``e2e``."""
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def in_ci() -> bool:
    """Whether we run in CI (``CI`` set to anything but an empty/false value)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def privileged_unavailable_reason() -> str | None:
    """Why privileged tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: run as root, CI does"
    if shutil.which("crun", path=_SBIN_PATH) is None:
        return "needs crun: run `make install` (as root), CI does"
    return None


def require_privileged() -> None:
    """Skip the calling test when root or crun is missing; fail instead when in CI."""
    reason = privileged_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so privileged tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def privileged() -> None:
    """Gate a test on root and crun (see :func:`require_privileged`)."""
    require_privileged()


def is_end_to_end(path: Path) -> bool:
    """Whether a test file starts the whole stack (Redis, agents, the panel, Caddy, a browser).

    Those make the ``e2e`` tier, which ``make test-e2e`` runs (CI runs it after ``make test``).
    """
    return "e2e" in path.stem or any(d in path.parents for d in E2E_DIRS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below tests/engine/privileged/ as privileged, and the whole-stack ones e2e."""
    for item in items:
        path = Path(str(item.path))
        if PRIVILEGED_DIR in path.parents:
            item.add_marker(pytest.mark.privileged)
        if is_end_to_end(path):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply the privileged gate to marked tests before their fixtures run."""
    if item.get_closest_marker("privileged") is not None:
        require_privileged()
