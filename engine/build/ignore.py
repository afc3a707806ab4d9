"""``.dockerignore`` patterns with Docker's rules.

One pattern a line; blank lines and ``#`` comments are skipped. Patterns are
cleaned like paths (a leading ``/`` and ``./`` are dropped), ``*`` and ``?``
match within one path component, ``[...]`` is a character class, ``**``
matches any number of components. A pattern excludes a path when it matches
the path or one of its parent directories; ``!pattern`` re-includes; the last
matching pattern wins.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    text: str


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i : i + 2] == "**":
                i += 2
                if pattern[i : i + 1] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


def clean_pattern(text: str) -> str:
    """A pattern cleaned like Docker's ``filepath.Clean`` without the leading slash."""
    cleaned = posixpath.normpath(text.strip().lstrip("/")) if text.strip().lstrip("/") else ""
    return "" if cleaned == "." else cleaned


class IgnoreRules:
    """The patterns of one ``.dockerignore``."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            cleaned = clean_pattern(line[1:] if negated else line)
            if not cleaned:
                continue
            self.patterns.append(_Pattern(re.compile(_translate(cleaned)), negated, line))

    @classmethod
    def from_text(cls, text: str) -> IgnoreRules:
        """Rules from the text of a ``.dockerignore``."""
        return cls(text.splitlines())

    @property
    def has_exceptions(self) -> bool:
        """Whether any ``!`` pattern exists (an excluded directory may then hold included files)."""
        return any(p.negated for p in self.patterns)

    def excluded(self, rel_path: str) -> bool:
        """Whether the context path ``rel_path`` (``a/b/c``, no leading slash) is excluded."""
        candidates = [rel_path]
        parent = posixpath.dirname(rel_path)
        while parent:
            candidates.append(parent)
            parent = posixpath.dirname(parent)
        result = False
        for p in self.patterns:
            if any(p.regex.match(c) for c in candidates):
                result = not p.negated
        return result
