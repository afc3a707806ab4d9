"""One error tree for the whole engine.

Every error says what was wrong and what to do next. The CLI prints
``hpctl: <message>`` and exits with ``exit_code``; the host agent maps the
class onto an HTTP-ish status for the panel.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code: int = 125

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(EngineError):
    """A named thing (image, container, volume, network) does not exist."""


class ImageNotFound(NotFound):
    """No image matches the reference."""


class ContainerNotFound(NotFound):
    """No container matches the id or name."""


class VolumeNotFound(NotFound):
    """No volume has that name."""


class Conflict(EngineError):
    """The request clashes with existing state (name in use, image in use, ...)."""


class InvalidSpec(EngineError):
    """The caller asked for something malformed (bad env, user, reference ...)."""


class InvalidReference(InvalidSpec):
    """An image reference that cannot be parsed."""


class InvalidArchive(EngineError):
    """An archive or blob that is corrupt, truncated or of an unknown format."""


class UnsafeArchive(InvalidArchive):
    """An archive member that tries to escape its root or create a device node."""


class CorruptBlob(InvalidArchive):
    """A blob whose content does not match its digest."""


class CommandNotFound(EngineError):
    """The container's command does not exist in its image (exit 127, like a shell)."""

    exit_code = 127


class QuotaExceeded(EngineError):
    """A request would exceed a tenant's or the host's limits."""


class LimitsNotSet(QuotaExceeded):
    """The engine requires tenant limits and the tenant has none on this host yet."""


class RuntimeFailure(EngineError):
    """crun, conmon or the kernel refused an operation that should have worked."""


class HostNotReady(EngineError):
    """The host lacks something the engine needs; `hpctl host setup` fixes it."""
