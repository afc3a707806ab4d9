"""Plain dataclasses describing images (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that `run` honours."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Image:
    """An image in the store.

    ``id`` is the config digest (like Docker's image id), ``digest`` the
    manifest digest, ``layers`` the uncompressed layer digests (diff_ids)
    from bottom to top.
    """

    id: str
    digest: str
    repo_tags: tuple[str, ...]
    created: str
    size: int
    layers: tuple[str, ...]
    config: ImageConfig

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the id, as `images` prints it."""
        return self.id.split(":", 1)[-1][:12]
