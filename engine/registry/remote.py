"""Remote image references: which registry, which repository, which tag or digest.

Built on engine.images.reference: ``localhost:5000/team/app:1.0`` is registry
``localhost:5000``, repository ``team/app``, tag ``1.0``. A name without a
registry part means Docker Hub (``busybox`` is ``library/busybox`` there).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.errors import InvalidReference
from engine.images.reference import DEFAULT_TAG, Reference, looks_like_domain, parse_reference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """Where a registry's API lives: ``scheme`` is None until a connection chose http or https."""

    host: str
    scheme: str | None = None

    @property
    def api_host(self) -> str:
        """The host:port requests go to (Docker Hub's API has its own name)."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host


@dataclass(frozen=True)
class RemoteRef:
    """An image in a registry."""

    endpoint: Endpoint
    repository: str
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        """The registry's name as users write it (host[:port])."""
        return self.endpoint.host

    @property
    def manifest_ref(self) -> str:
        """What goes after ``/manifests/``: the digest when given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def local_name(self) -> str:
        """The name the image gets in the local store (``registry/repo:tag``; Docker Hub shortened)."""
        repo = self.repository
        name = repo.removeprefix("library/") if self.registry == DOCKER_HUB else f"{self.registry}/{repo}"
        return f"{name}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_registry(ref: Reference) -> tuple[str, str]:
    first, _, rest = ref.name.partition("/")
    if rest and looks_like_domain(first):
        return first, rest
    repo = ref.name if "/" in ref.name else f"library/{ref.name}"
    return DOCKER_HUB, repo


def parse_remote(text: str) -> RemoteRef:
    """Parse ``[registry/]repository[:tag][@digest]``; raises InvalidReference if malformed."""
    ref = parse_reference(text)
    registry, repository = _split_registry(ref)
    return RemoteRef(Endpoint(registry), repository, ref.tag, ref.digest)


def parse_registry_url(url: str) -> Endpoint:
    """An endpoint from ``https://host[:port]``, ``http://host[:port]`` or a bare ``host[:port]``.

    Raises InvalidReference for anything else (a path, a user part, another scheme).
    """
    text = url.strip()
    text = text if "://" in text else "//" + text
    text = text[:-1] if text.endswith("/") else text
    parts = urlsplit(text)
    scheme = parts.scheme or None
    if scheme not in (None, "http", "https") or not parts.netloc or parts.path or "@" in parts.netloc:
        raise InvalidReference(
            f"invalid registry address {url!r}: expected host[:port], https://host[:port] or http://host[:port]"
        )
    return Endpoint(parts.netloc.lower(), scheme)


def remote_in(endpoint: Endpoint, reference: str) -> RemoteRef:
    """``reference`` (``repo[:tag][@digest]``, no registry part) as an image at ``endpoint``."""
    ref = parse_reference(reference)
    first, _, rest = ref.name.partition("/")
    if rest and looks_like_domain(first):
        raise InvalidReference(
            f"{reference!r} names a registry ({first}); give only the repository for {endpoint.host}"
        )
    return RemoteRef(endpoint, ref.name, ref.tag, ref.digest)
