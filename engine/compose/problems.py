"""What is wrong with a compose file: every problem names where (a dotted key path) and its line."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidSpec


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``where`` is a key path such as ``services.web.ports[0]``, ``line`` 1-based."""

    where: str
    line: int | None
    message: str

    def __str__(self) -> str:
        at = f"line {self.line}: " if self.line else ""
        where = f"{self.where}: " if self.where else ""
        return f"{at}{where}{self.message}"


class ComposeError(InvalidSpec):
    """A compose file we refuse; ``problems`` lists every reason, each with its key and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.where))
        count = len(self.problems)
        head = f"invalid compose file ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))
