"""Turn `-u USER[:GROUP]` (or the image's USER) into numeric ids using the image's files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidSpec
from engine.runtime.idmap import RANGE_SIZE
from engine.runtime.rootpath import read_text_in_root


@dataclass(frozen=True)
class ResolvedUser:
    """Numeric ids and home directory of the container's process user."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def _table(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _check_id(value: int, what: str, spec: str) -> int:
    if not 0 <= value < RANGE_SIZE:
        raise InvalidSpec(
            f"invalid user {spec!r}: {what} {value} is outside 0-{RANGE_SIZE - 1}, "
            "the ids a container can use"
        )
    return value


def _parse_id(text: str, what: str, spec: str) -> int:
    """A numeric id from the image's /etc files, checked against the container's id range."""
    if not text.isdigit():
        raise InvalidSpec(
            f"invalid user {spec!r}: the image's {what} {text!r} is not a number; fix the image's /etc files"
        )
    return _check_id(int(text), what, spec)


def resolve_user(root: Path, spec: str) -> ResolvedUser:
    """Resolve ``spec`` ('', 'name', 'uid', 'name:group', 'uid:gid') against root's /etc files.

    Raises InvalidSpec naming the user or group that the image does not know.
    """
    passwd = _table(read_text_in_root(root, "/etc/passwd"))
    groups = _table(read_text_in_root(root, "/etc/group"))
    user_part, _, group_part = (spec or "0").partition(":")
    if not user_part:
        raise InvalidSpec(f"invalid user {spec!r}: expected USER[:GROUP], e.g. 1000:1000 or nobody")
    entry = next((p for p in passwd if len(p) >= 4 and (p[0] == user_part or p[2] == user_part)), None)
    if user_part.isdigit():
        uid = _check_id(int(user_part), "uid", spec)
        gid = _parse_id(entry[3], "gid", spec) if entry else 0
        home = entry[5] if entry and len(entry) > 5 else "/"
        name = entry[0] if entry else None
    elif entry is None:
        raise InvalidSpec(
            f"invalid user {spec!r}: no user named {user_part!r} in the image's /etc/passwd; "
            "use a numeric uid or a user the image defines"
        )
    else:
        uid, gid = _parse_id(entry[2], "uid", spec), _parse_id(entry[3], "gid", spec)
        home = entry[5] if len(entry) > 5 else "/"
        name = entry[0]
    if group_part:
        if group_part.isdigit():
            gid = _check_id(int(group_part), "gid", spec)
        else:
            group = next((g for g in groups if len(g) >= 3 and g[0] == group_part), None)
            if group is None:
                raise InvalidSpec(
                    f"invalid user {spec!r}: no group named {group_part!r} in the image's /etc/group"
                )
            gid = _parse_id(group[2], "gid", spec)
    _check_id(gid, "gid", spec)
    extra: list[int] = []
    if name is not None and not group_part:
        for g in groups:
            if len(g) >= 4 and name in g[3].split(",") and g[2].isdigit():
                gid_extra = int(g[2])
                if gid_extra != gid and gid_extra < RANGE_SIZE:
                    extra.append(gid_extra)
    return ResolvedUser(uid=uid, gid=gid, additional_gids=tuple(sorted(set(extra))), home=home or "/")
