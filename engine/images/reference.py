"""Image references: parse, validate and normalise `name[:tag][@digest]` strings.

The store keeps full names (``busybox:latest``, ``registry.example/team/app:1.2``).
Docker Hub spellings are shortened the way `docker images` prints them:
``docker.io/library/busybox:latest`` becomes ``busybox:latest`` and
``docker.io/team/app`` becomes ``team/app:latest``. Other registries, including
podman's ``localhost/``, are kept as written. A bare name means ``:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidReference

DEFAULT_TAG = "latest"
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")

_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed image reference.

    ``name`` is the normalised repository (``busybox``, ``localhost/app``,
    ``registry.example:5000/team/app``); ``tag`` defaults to ``latest`` unless
    the reference carried only a digest; ``digest`` is a manifest digest or None.
    """

    name: str
    tag: str | None
    digest: str | None

    @property
    def tagged(self) -> str:
        """``name:tag`` (``name:latest`` when no tag was given)."""
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def looks_like_domain(component: str) -> bool:
    """Whether the first path component of a reference names a registry (as Docker decides)."""
    return "." in component or ":" in component or component == "localhost" or component != component.lower()


def parse_reference(text: str) -> Reference:
    """Parse ``text`` into a normalised :class:`Reference`.

    Raises InvalidReference (saying which part is wrong) for anything that is
    not ``[domain[:port]/]path[:tag][@sha256:<hex>]``.
    """
    original = text
    if not text or text != text.strip():
        raise InvalidReference(f"invalid image reference {original!r}: empty or surrounded by spaces")
    digest: str | None = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not DIGEST_RE.match(digest):
            raise InvalidReference(
                f"invalid image reference {original!r}: the digest must be sha256:<64 lowercase hex digits>"
            )
    tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReference(
                f"invalid image reference {original!r}: a tag is 1-128 letters, digits, '_', '.' or '-' "
                "and does not start with '.' or '-'"
            )
    if not text:
        raise InvalidReference(f"invalid image reference {original!r}: the name is empty")
    parts = text.split("/")
    domain: str | None = None
    if len(parts) > 1 and looks_like_domain(parts[0]):
        domain = parts[0]
        parts = parts[1:]
        if not _DOMAIN_RE.match(domain):
            raise InvalidReference(f"invalid image reference {original!r}: bad registry host {domain!r}")
    for part in parts:
        if not _COMPONENT_RE.match(part):
            raise InvalidReference(
                f"invalid image reference {original!r}: name component {part!r} must be lowercase letters "
                "and digits, separated by '.', '_', '__' or '-'"
            )
    if domain is not None and domain.lower() in _DOCKER_HUB:
        domain = None
        if len(parts) == 2 and parts[0] == "library":
            parts = parts[1:]
    name = "/".join(([domain] if domain else []) + parts)
    if len(name) > _MAX_NAME:
        raise InvalidReference(f"invalid image reference {original!r}: the name is longer than {_MAX_NAME}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(name=name, tag=tag, digest=digest)


def normalize_tag(text: str) -> str:
    """Return the stored form ``name:tag`` of a tag reference.

    Raises InvalidReference if ``text`` is malformed or carries a digest (a
    digest cannot be used as a tag).
    """
    ref = parse_reference(text)
    if ref.digest is not None:
        raise InvalidReference(f"invalid tag {text!r}: a tag cannot contain a digest (@sha256:...)")
    return ref.tagged


def split_tag(full: str) -> tuple[str, str]:
    """Split a stored ``name:tag`` into (repository, tag) for display."""
    slash = full.rfind("/")
    colon = full.rfind(":")
    if colon > slash:
        return full[:colon], full[colon + 1 :]
    return full, DEFAULT_TAG
