"""Compose files (compose-spec) as HostPanel's own project model; no Django here.

``load_project`` parses, interpolates, validates (the compose-spec JSON schema, then what
HostPanel supports, then cross-references) and returns a frozen :class:`Project`, or raises
:class:`ComposeError` listing every problem with its key path and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.build.beneath import Missing
from engine.compose import schema, support
from engine.compose.digest import service_digest
from engine.compose.graph import check as check_references
from engine.compose.graph import start_order
from engine.compose.interpolate import InterpolationError, interpolate, lookup_in
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
from engine.compose.translate import Translator, read_env_file
from engine.compose.yamlload import Document, load
from engine.errors import InvalidSpec

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
    if base_dir is None:
        return {}
    try:
        return read_env_file(base_dir, ".env", lookup_in(environ))
    except Missing:
        return {}
    except (InvalidSpec, InterpolationError) as e:
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
