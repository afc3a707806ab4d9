"""The layering contract (DESIGN.md): engine/ never imports the web side.

engine/ is a plain library used by the CLI and the host agent; it must not
import Django, Celery, Channels, DRF or hostpanel, directly or by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"
FORBIDDEN = {"django", "celery", "channels", "channels_redis", "rest_framework", "daphne", "hostpanel"}


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every absolute import and every import_module/__import__ of a literal."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            if name in ("import_module", "__import__") and literal:
                found.append((node.lineno, str(arg.value)))
    return found


def engine_modules() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py") if "__pycache__" not in p.parts)


def test_engine_has_modules() -> None:
    assert len(engine_modules()) > 3


@pytest.mark.parametrize("path", engine_modules(), ids=lambda p: str(p.relative_to(ENGINE.parent)))
def test_engine_module_does_not_import_web_side(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [
        f"{path.relative_to(ENGINE.parent)}:{line}: imports {mod}"
        for line, mod in _imported_modules(tree)
        if mod.split(".")[0] in FORBIDDEN
    ]
    assert not bad, "engine/ must not import the web side:\n" + "\n".join(bad)


def test_checker_catches_forbidden_imports() -> None:
    src = (
        "import django.db\nfrom celery import shared_task\nimport importlib\n"
        "importlib.import_module('hostpanel.settings')\nfrom . import sibling\nimport json\n"
    )
    mods = [m for _, m in _imported_modules(ast.parse(src))]
    assert [m for m in mods if m.split(".")[0] in FORBIDDEN] == [
        "django.db",
        "celery",
        "hostpanel.settings",
    ]


# ---- one access rule (hostpanel/tenants/access.py) --------------------------------------
HOSTPANEL = ENGINE.parent / "hostpanel"
ACCESS_MODULE = "hostpanel.tenants.access"
ACCESS_NAMES = {
    "actor_of",
    "at_least",
    "has_role",
    "role_of",
    "require_role",
    "require_admin",
    "get_tenant",
    "visible_tenants",
    "source_address",
    "still_valid",
    "may_still",
}
RANK_OWNERS = {HOSTPANEL / "tenants" / "access.py", HOSTPANEL / "tenants" / "models.py"}


def access_violations(tree: ast.AST) -> list[str]:
    """Role-rule names imported from anywhere but the access module, and ROLE_RANK used at all."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module != ACCESS_MODULE:
            found += [
                f"{node.lineno}: imports {a.name} from {node.module}"
                for a in node.names
                if a.name in ACCESS_NAMES
            ]
        if (
            isinstance(node, ast.Name | ast.alias)
            and getattr(node, "id", getattr(node, "name", "")) == "ROLE_RANK"
        ):
            found.append(
                f"{getattr(node, 'lineno', '?')}: uses ROLE_RANK (compare roles with access.at_least)"
            )
    return found


def panel_modules() -> list[Path]:
    return sorted(
        p
        for p in HOSTPANEL.rglob("*.py")
        if "__pycache__" not in p.parts and "migrations" not in p.parts and p not in RANK_OWNERS
    )


@pytest.mark.parametrize("path", panel_modules(), ids=lambda p: str(p.relative_to(HOSTPANEL.parent)))
def test_role_rule_comes_only_from_the_access_module(path: Path) -> None:
    bad = access_violations(ast.parse(path.read_text(), filename=str(path)))
    assert not bad, (
        f"{path.relative_to(HOSTPANEL.parent)}: the role rule lives in {ACCESS_MODULE}:\n" + "\n".join(bad)
    )


def test_access_checker_catches_re_typed_rules() -> None:
    src = (
        "from hostpanel.tenants.services import require_role\n"
        "from hostpanel.tenants.models import ROLE_RANK, Role\n"
        "from hostpanel.tenants.access import has_role\n"
        "ok = ROLE_RANK['owner'] > 1\n"
    )
    assert len(access_violations(ast.parse(src))) == 3


def test_the_access_module_sits_below_every_door() -> None:
    """access -> resources -> ... -> api/dashboard/consumers: access.py imports none of the doors."""
    path = HOSTPANEL / "tenants" / "access.py"
    allowed = {"hostpanel.audit.services", "hostpanel.errors", "hostpanel.tenants.models"}
    panel = {m for _, m in _imported_modules(ast.parse(path.read_text())) if m.split(".")[0] == "hostpanel"}
    assert panel <= allowed, f"tenants/access.py imports {sorted(panel - allowed)}"


# ---- the tenants' Docker API is a door (DESIGN.md Layout) -------------------------------
DOCKER_DOOR = HOSTPANEL / "dockerapi"
DOCKER_DOOR_IMPORTERS = (DOCKER_DOOR, HOSTPANEL / "dashboard")  # the door itself, and its page
OTHER_DOORS_AND_AGENT = (
    "hostpanel.api",
    "hostpanel.dashboard",
    "hostpanel.agent",
)


@pytest.mark.parametrize("path", panel_modules(), ids=lambda p: str(p.relative_to(HOSTPANEL.parent)))
def test_the_docker_api_door_sits_above_the_resources(path: Path) -> None:
    """access -> resources -> deployments/hosts -> api/dashboard/consumers/dockerapi: no resource
    imports the Docker API door, and the door imports no other door nor the agent's code."""
    modules = [m for _, m in _imported_modules(ast.parse(path.read_text(), filename=str(path)))]
    if not any(path.is_relative_to(root) for root in DOCKER_DOOR_IMPORTERS):
        assert not [m for m in modules if m.startswith("hostpanel.dockerapi")], f"{path} imports the door"
    if path.is_relative_to(DOCKER_DOOR):
        bad = [m for m in modules if m.startswith(OTHER_DOORS_AND_AGENT)]
        assert not bad, f"{path} imports {bad}"
