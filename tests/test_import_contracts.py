"""import-linter's contracts (pyproject.toml [tool.importlinter]) hold, and their lists stay whole.

The contracts: engine/ imports nothing of the panel; the panel's apps never import the host agent
(hostpanel/agent/); the panel's layers, with a ratchet of the upward imports that remain.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOSTPANEL = ROOT / "hostpanel"


def contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_the_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_every_panel_module_is_forbidden_the_agent() -> None:
    """A new app or top-level module of hostpanel/ must join the list (or the agent may leak in)."""
    listed = set(contracts()["panel-never-imports-agent"]["source_modules"])  # type: ignore[arg-type]
    children = {
        f"hostpanel.{p.stem if p.suffix == '.py' else p.name}"
        for p in HOSTPANEL.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert children - {"hostpanel.agent"} == listed


def test_the_ratchet_fails_on_stale_entries() -> None:
    """An ignored import that no longer exists must be removed: import-linter's default alerting."""
    layers = contracts()["panel-layers"]
    assert layers.get("unmatched_ignore_imports_alerting", "error") == "error"


def _sent_names(path: Path, callers: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        str(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) in callers
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


@pytest.mark.django_db
def test_tasks_the_panel_sends_by_name_are_the_agents() -> None:
    """The panel sends the agent's tasks by name (it never imports them): each name is registered."""
    from hostpanel.agent import build_tasks, edge_tasks, tasks  # noqa: F401  (registers them)
    from hostpanel.builds.dispatch import RUN_BUILD
    from hostpanel.celery import app
    from hostpanel.edge.dispatch import APPLY_ROUTES
    from hostpanel.hosts.dispatch import AGENT_TASKS

    names = _sent_names(HOSTPANEL / "hosts" / "dispatch.py", {"send", "_ask"})
    assert {"reconcile_host", "start_exec", "container_logs", "purge_tenant"} <= names
    sent = {f"{AGENT_TASKS}.{name}" for name in names} | {RUN_BUILD, APPLY_ROUTES}
    assert sent - set(app.tasks) == set()
