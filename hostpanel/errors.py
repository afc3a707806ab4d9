"""Errors the services raise; the API maps each onto one HTTP status and one error format.

Every message says what was wrong and, where it helps, what to do next.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error a service raises on purpose."""

    status: int = 400
    code: str = "invalid"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ServiceError):
    """The request is malformed or asks for something not allowed."""


class NotFound(ServiceError):
    """No such object, or one the caller may not see (another tenant's object)."""

    status = 404
    code = "not_found"


class Forbidden(ServiceError):
    """The caller sees the object but its role may not do this."""

    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    """The request clashes with existing state (a name in use, ...)."""

    status = 409
    code = "conflict"


class QuotaExceeded(ServiceError):
    """The change would take the tenant over its quota; details list each excess."""

    status = 422
    code = "quota_exceeded"


class NoCapacity(ServiceError):
    """No host that is up has room for a replica."""

    status = 409
    code = "no_capacity"


class HostUnavailable(ServiceError):
    """The host that runs a container did not answer in time."""

    status = 503
    code = "host_unavailable"
