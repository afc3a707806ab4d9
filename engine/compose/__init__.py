"""Compose files (compose-spec) as HostPanel's own project model; no Django here.

``load_project`` parses, interpolates, validates (the compose-spec JSON schema, then what
HostPanel supports, then cross-references) and returns a frozen :class:`Project`, or raises
:class:`ComposeError` listing every problem with its key path and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.compose import schema, support
from engine.compose.digest import service_digest
from engine.compose.graph import check as check_references
from engine.compose.graph import start_order
from engine.compose.interpolate import InterpolationError, interpolate, lookup_in, parse_env_file
from engine.compose.model import (
    BuildDef,
    HealthcheckDef,
    MountDef,
    NetworkDef,
    PortDef,
    Project,
    SecretDef,
    SecretRef,
    Service,
    VolumeDef,
)
from engine.compose.problems import ComposeError, Problem
from engine.compose.translate import MAX_ENV_FILE, Translator
from engine.compose.yamlload import Document, load

__all__ = [
    "BuildDef",
    "ComposeError",
    "HealthcheckDef",
    "MountDef",
    "NetworkDef",
    "PortDef",
    "Problem",
    "Project",
    "SecretDef",
    "SecretRef",
    "Service",
    "VolumeDef",
    "load_project",
    "service_digest",
    "start_order",
]


def _dotenv(base_dir: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    if base_dir is None or not (base_dir / ".env").exists():
        return {}
    root = base_dir.resolve()
    path = (base_dir / ".env").resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ComposeError([Problem(".env", None, "refused: not a file inside the project directory")])
    if path.stat().st_size > MAX_ENV_FILE:
        raise ComposeError([Problem(".env", None, f"over {MAX_ENV_FILE} bytes")])
    try:
        return parse_env_file(path.read_text(encoding="utf-8"), lookup_in(environ))
    except (InterpolationError, UnicodeDecodeError) as e:
        raise ComposeError([Problem(".env", None, str(e))]) from None


def _interpolate(doc: Document, value: Any, path: tuple[str | int, ...], env: Any, out: list[Problem]) -> Any:
    if isinstance(value, str):
        try:
            return interpolate(value, env)
        except InterpolationError as e:
            out.append(doc.problem(path, str(e)))
            return value
    if isinstance(value, dict):
        return {k: _interpolate(doc, v, (*path, k), env, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(doc, v, (*path, i), env, out) for i, v in enumerate(value)]
    return value


def load_project(
    text: str,
    *,
    name: str,
    environ: Mapping[str, str] = {},
    base_dir: Path | None = None,
    allow_host_binds: bool = False,
) -> Project:
    """Parse the compose file ``text`` as project ``name``.

    Variables come from ``environ``, then ``base_dir/.env``. ``env_file``, build contexts and
    secret files are read relative to ``base_dir`` and must stay inside it (no base dir: they
    are refused). Host bind mounts are refused unless ``allow_host_binds`` (the operator's
    hpctl only). Raises ComposeError listing every problem, each with its key and line.
    """
    doc = load(text)
    lookup = lookup_in(environ, _dotenv(base_dir, environ))
    problems: list[Problem] = []
    doc.data = _interpolate(doc, doc.data, (), lookup, problems)
    if problems:
        raise ComposeError(problems)
    problems += schema.check(doc)
    reported = {p.where for p in problems}  # a key not in the spec is not also "unsupported"
    problems += [p for p in support.check(doc) if p.where not in reported]
    if problems:
        raise ComposeError(problems)
    translator = Translator(doc, lookup=lookup, base_dir=base_dir, allow_host_binds=allow_host_binds)
    data = doc.data
    services = {n: translator.service(n, spec or {}) for n, spec in (data.get("services") or {}).items()}
    networks = {n: translator.network(n, spec) for n, spec in (data.get("networks") or {}).items()}
    if "default" not in networks and any("default" in s.networks for s in services.values()):
        networks["default"] = NetworkDef("default")
    project = Project(
        name=name,
        services=services,
        networks=networks,
        volumes={n: translator.volume(n, spec) for n, spec in (data.get("volumes") or {}).items()},
        secrets={n: translator.secret(n, spec or {}) for n, spec in (data.get("secrets") or {}).items()},
    )
    problems = translator.problems + check_references(project, doc)
    if problems:
        raise ComposeError(problems)
    return project
