"""Registry errors: subclasses of the engine's error tree (engine/errors.py)."""

from __future__ import annotations

from engine.errors import EngineError


class RegistryError(EngineError):
    """A registry answered with an error the client cannot work around."""


class RegistryUnreachable(RegistryError):
    """No connection to the registry (refused, DNS, TLS, timeout)."""


class AuthenticationFailed(RegistryError):
    """The registry refused the credentials, or they lack the rights for the operation."""
