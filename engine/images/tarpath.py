"""Tar member names: split them into safe path components or refuse them."""

from __future__ import annotations

from engine.errors import UnsafeArchive

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


def member_parts(path: str, member: str) -> tuple[str, ...]:
    """Split the tar path ``path`` into components relative to the layer root.

    ``.`` and empty components are dropped (``./etc//passwd`` -> ``('etc', 'passwd')``).
    Raises UnsafeArchive, naming ``member``, for an absolute path or any ``..``
    component: such a member could land outside the destination.
    """
    if path.startswith("/"):
        raise UnsafeArchive(
            f"archive member {member!r} has an absolute path {path!r}; refusing to extract it"
        )
    if "\x00" in path:
        raise UnsafeArchive(f"archive member {member!r} has a NUL byte in its path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(
            f"archive member {member!r} has a '..' component in {path!r}; refusing to extract it"
        )
    return parts


def display(parts: tuple[str, ...]) -> str:
    """Components joined back into a path for messages."""
    return "/".join(parts) or "."
