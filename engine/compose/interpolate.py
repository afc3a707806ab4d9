"""Compose variable interpolation and ``.env`` / ``env_file`` files, per the compose spec.

``$VAR`` and ``${VAR}`` (unset = empty), ``${VAR:-default}`` (unset or empty), ``${VAR-default}``
(unset), ``${VAR:?error}`` / ``${VAR?error}`` (refuse when unset or empty / unset),
``${VAR:+alt}`` / ``${VAR+alt}`` (alt when set and non-empty / set), ``$$`` for a literal ``$``.
Defaults and alternatives may themselves contain interpolations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Lookup = Callable[[str], str | None]

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A value that cannot be interpolated (a bad ``$`` form or a ``${VAR?error}`` that fired)."""


def lookup_in(*mappings: Mapping[str, str]) -> Lookup:
    """A lookup through ``mappings`` in order (the first that has the name wins)."""

    def lookup(name: str) -> str | None:
        for mapping in mappings:
            if name in mapping:
                return mapping[name]
        return None

    return lookup


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed '${{' in {text!r}")


def _braced(body: str, lookup: Lookup) -> str:
    match = _NAME.match(body)
    if not match:
        raise InterpolationError(f"invalid interpolation '${{{body}}}': a variable name must come first")
    name, rest = match.group(), body[match.end() :]
    value = lookup(name)
    if not rest:
        return value or ""
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InterpolationError(
            f"invalid interpolation '${{{body}}}': "
            f"use ${{{name}:-default}}, ${{{name}:?error}} or ${{{name}:+alt}}"
        )
    word = rest[len(operator) :]
    empty_counts = operator.startswith(":")
    present = value is not None and (value != "" or not empty_counts)
    kind = operator[-1]
    if kind == "-":
        return value if present and value is not None else interpolate(word, lookup)
    if kind == "+":
        return interpolate(word, lookup) if present else ""
    if not present or value is None:
        reason = interpolate(word, lookup) or ("is empty" if value == "" else "is not set")
        raise InterpolationError(f"variable {name} is required: {reason}")
    return value


def interpolate(text: str, lookup: Lookup) -> str:
    """``text`` with every ``$`` form replaced; raises InterpolationError naming the bad form."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1 : j + 2]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            end = _closing_brace(text, j + 2)
            out.append(_braced(text[j + 2 : end], lookup))
            i = end + 1
        else:
            match = _NAME.match(text, j + 1)
            if not match:
                raise InterpolationError(
                    f"invalid interpolation in {text!r}: "
                    "'$' must start $NAME or ${NAME}; write $$ for a '$'"
                )
            out.append(lookup(match.group()) or "")
            i = match.end()
    return "".join(out)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$$"}


def _double_quoted(raw: str, lineno: int) -> tuple[str, str]:
    out: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
            i += 2
            continue
        if char == '"':
            return "".join(out), raw[i + 1 :]
        out.append(char)
        i += 1
    raise InterpolationError(f"line {lineno}: unclosed double quote")


def parse_env_file(text: str, lookup: Lookup) -> dict[str, str]:
    """Parse ``.env`` / ``env_file`` content: ``[export ]NAME=VALUE`` lines, ``#`` comments.

    Values may be 'single-quoted' (literal), "double-quoted" (escapes and interpolation) or bare
    (interpolation; a `` #`` comment ends it). A bare ``NAME`` takes its value from ``lookup``
    (skipped when unset). Earlier lines are visible to later ones. Raises InterpolationError
    naming the line.
    """
    result: dict[str, str] = {}

    def scoped(name: str) -> str | None:
        return result[name] if name in result else lookup(name)

    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        name, eq, raw = stripped.partition("=")
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise InterpolationError(f"line {lineno}: {name!r} is not a variable name (use NAME=VALUE)")
        if not eq:
            value = lookup(name)
            if value is not None:
                result[name] = value
            continue
        raw = raw.strip()
        try:
            if raw.startswith("'"):
                end = raw.find("'", 1)
                if end < 0:
                    raise InterpolationError("unclosed single quote")
                result[name] = raw[1:end]
            elif raw.startswith('"'):
                body, _ = _double_quoted(raw, lineno)
                result[name] = interpolate(body, scoped)
            else:
                bare = re.split(r"\s+#", raw, maxsplit=1)[0].rstrip()
                result[name] = interpolate(bare, scoped)
        except InterpolationError as e:
            raise InterpolationError(f"line {lineno}: {e}") from None
    return result
