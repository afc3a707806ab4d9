"""Read a Dockerfile into stages of checked instructions.

The syntax (line continuations, comments, parser directives, JSON forms) is
parsed by the ``dockerfile`` package, which wraps Docker's own Go parser; this
module checks what the parser leaves to the builder (known instructions,
argument counts, flags, stage names) and reports every problem with its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dockerfile as go_parser  # the parser wheel ships no type information

from engine.errors import InvalidSpec

FILESYSTEM_INSTRUCTIONS = ("RUN", "COPY", "ADD")
METADATA_INSTRUCTIONS = (
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "LABEL",
    "CMD",
    "ENTRYPOINT",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "VOLUME",
    "SHELL",
    "MAINTAINER",
)
KNOWN = ("FROM", *FILESYSTEM_INSTRUCTIONS, *METADATA_INSTRUCTIONS)
_ALLOWED_FLAGS = {
    "FROM": (),
    "COPY": ("from", "chown", "chmod"),
    "ADD": ("chown", "chmod"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")
_ESCAPE_RE = re.compile(r"^#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=")


@dataclass(frozen=True)
class Instruction:
    """One instruction as written: name in upper case, raw arguments (variables not substituted)."""

    name: str
    line: int
    args: tuple[str, ...]
    flags: dict[str, str]
    json: bool
    text: str

    def error(self, message: str) -> InvalidSpec:
        """An InvalidSpec naming this instruction's line."""
        return InvalidSpec(f"Dockerfile line {self.line}: {self.name}: {message}")


@dataclass
class Stage:
    """A build stage: ``FROM base [AS name]`` and its instructions."""

    index: int
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The stage's name, or its index when it has none."""
        return self.name or str(self.index)


@dataclass
class Dockerfile:
    """A parsed Dockerfile: the ARGs before the first FROM and the stages."""

    global_args: list[Instruction]
    stages: list[Stage]
    escape: str

    def stage(self, ref: str) -> Stage | None:
        """The stage named ``ref`` (or numbered, for a digit string), or None."""
        for s in self.stages:
            if s.name == ref.lower() or (ref.isdigit() and s.index == int(ref)):
                return s
        return None


def escape_char(text: str) -> str:
    """The escape character set by a leading ``# escape=`` directive (default backslash)."""
    for line in text.splitlines():
        stripped = line.strip()
        m = _ESCAPE_RE.match(stripped)
        if m:
            return m.group(1)
        if not _DIRECTIVE_RE.match(stripped):
            break
    return "\\"


def parse_dockerfile(text: str, where: str = "Dockerfile") -> Dockerfile:
    """Parse and check ``text``; raises InvalidSpec naming the line of the first problem."""
    try:
        commands = go_parser.parse_string(text)
    except go_parser.GoParseError as exc:
        raise InvalidSpec(f"{where}: syntax error: {exc}") from None
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for cmd in commands:
        inst = _instruction(cmd)
        if inst.name == "FROM":
            stages.append(_stage(inst, len(stages), stages))
        elif not stages:
            if inst.name != "ARG":
                raise inst.error("only ARG may come before the first FROM")
            global_args.append(inst)
        else:
            stages[-1].instructions.append(inst)
    if not stages:
        raise InvalidSpec(f"{where} has no FROM instruction: start it with e.g. FROM busybox")
    return Dockerfile(global_args, stages, escape_char(text))


def _instruction(cmd: go_parser.Command) -> Instruction:
    name = str(cmd.cmd).upper()
    line = int(cmd.start_line)
    if name not in KNOWN:
        hint = " (ONBUILD triggers are not supported)" if name == "ONBUILD" else ""
        raise InvalidSpec(f"Dockerfile line {line}: unknown instruction {name}{hint}")
    flags: dict[str, str] = {}
    inst = Instruction(name, line, tuple(str(v) for v in cmd.value), flags, bool(cmd.json), str(cmd.original))
    allowed = _ALLOWED_FLAGS.get(name, ())
    for raw in cmd.flags:
        key, eq, value = str(raw).removeprefix("--").partition("=")
        if key not in allowed:
            raise inst.error(
                f"unsupported flag --{key}" + (f" (known: --{', --'.join(allowed)})" if allowed else "")
            )
        if not eq or not value:
            raise inst.error(f"flag --{key} needs a value (--{key}=VALUE)")
        flags[key] = value
    if cmd.heredocs:
        raise inst.error("heredocs (<<EOF) are not supported; use a script file in the context")
    if not inst.args or inst.args == ("",):
        raise inst.error("needs at least one argument")
    if name in ("ENV", "LABEL") and len(inst.args) % 2:
        raise inst.error("expects KEY=VALUE pairs")
    if name in ("COPY", "ADD") and len(inst.args) < 2:
        raise inst.error("needs a source and a destination: COPY SRC... DEST")
    if name in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER") and len(inst.args) != 1 and not inst.json:
        raise inst.error("takes exactly one argument")
    if name == "SHELL" and not inst.json:
        raise inst.error('needs the JSON form, e.g. SHELL ["/bin/sh", "-c"]')
    if name == "HEALTHCHECK" and inst.args[0].upper() not in ("CMD", "NONE"):
        raise inst.error("expects CMD ... or NONE")
    return inst


def _stage(inst: Instruction, index: int, earlier: list[Stage]) -> Stage:
    args = inst.args
    if len(args) == 1:
        return Stage(index, args[0], None, inst.line)
    if len(args) == 3 and args[1].upper() == "AS":
        name = args[2].lower()
        if not _STAGE_NAME_RE.match(name):
            raise inst.error(f"invalid stage name {args[2]!r}: use letters, digits, '_', '.', '-'")
        if any(s.name == name for s in earlier):
            raise inst.error(f"stage name {name!r} is used twice")
        return Stage(index, args[0], name, inst.line)
    raise inst.error("expects FROM IMAGE [AS NAME]")
