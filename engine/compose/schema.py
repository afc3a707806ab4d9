"""The compose-spec JSON schema (vendored, see README.md), checked with ``jsonschema``."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from engine.compose.problems import Problem
from engine.compose.yamlload import Document


@functools.cache
def _validator() -> Any:
    import jsonschema  # on first use: it takes a tenth of a second to import

    text = resources.files("engine.compose").joinpath("compose-spec.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    return jsonschema.Draft7Validator(schema)


def _unexpected(error: Any) -> list[str]:
    instance, schema = error.instance, error.schema
    if not isinstance(instance, dict):
        return []
    known = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]


def check(doc: Document) -> list[Problem]:
    """Every place where ``doc`` breaks the compose-spec schema, with its key path and line."""
    from jsonschema.exceptions import best_match

    problems: list[Problem] = []
    for error in _validator().iter_errors(doc.data):
        error = best_match([error])
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            for key in _unexpected(error):
                problems.append(
                    doc.problem((*path, key), f"unknown key {key!r}: it is not in the compose spec")
                )
            continue
        problems.append(doc.problem(path, error.message))
    return problems
