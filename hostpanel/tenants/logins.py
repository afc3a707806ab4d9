"""Password logins: lockout after repeated failures (django-axes) and their audit rows.

Every door that takes a password (``/login/``, ``/api-auth/login/``, the Django
admin and the registry's HTTP basic auth) goes through Django's ``authenticate``
with the request, so django-axes counts its failures: after ``AXES_FAILURE_LIMIT``
failures for one username, or from one address, further tries are answered 429
by :func:`lockout_response` without checking the password, until the cool-off
(``AXES_COOLOFF_TIME``) has passed. Each failure and each locked-out try is an
audit row (``auth.login_failed`` / ``auth.locked_out``, result ``denied``).

A successful login clears the failures of its own username only (not axes'
reset on success, which also clears every failure from the same address, so an
attacker could log into its own account between guesses to reset the count).
"""

from __future__ import annotations

from typing import Any

from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in, user_login_failed
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor, record

LOGIN_FAILED = "auth.login_failed"
LOCKED_OUT = "auth.locked_out"


class LockedOut(Exception):
    """Too many failed logins for this username or from this address; wait for the cool-off."""


def cooloff_seconds() -> int:
    """How long a lock lasts after the last counted failure, in whole seconds."""
    return max(1, int(settings.AXES_COOLOFF_TIME.total_seconds()))


def cooloff_minutes() -> int:
    return max(1, round(cooloff_seconds() / 60))


def lockout_message() -> str:
    minutes = cooloff_minutes()
    return (
        f"too many failed logins for this account or from this address: try again in {minutes} "
        "minute(s), or ask an administrator to unlock it"
    )


def password_login(request: HttpRequest, username: str, password: str) -> AbstractBaseUser | None:
    """The user with these credentials, or None; raises LockedOut while the login is locked.

    For doors that are not a Django login form (the registry's basic auth): the
    request is handed to ``authenticate`` so the failure counts toward the lock.
    """
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        raise LockedOut(lockout_message())
    return user


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The answer to a locked-out login (``AXES_LOCKOUT_CALLABLE``): 429 with Retry-After."""
    message = lockout_message()
    response: HttpResponse
    if request.path.startswith("/v2/"):
        body = {"errors": [{"code": "TOOMANYREQUESTS", "message": message, "detail": None}]}
        response = JsonResponse(body, status=429)
        response["Docker-Distribution-API-Version"] = "registry/2.0"
    elif "json" in request.headers.get("Accept", ""):
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"minutes": cooloff_minutes()}, status=429)
    response["Retry-After"] = str(cooloff_seconds())
    return response


def _source(request: HttpRequest | None) -> str | None:
    return getattr(request, "axes_ip_address", None) if request is not None else None


def _where(request: HttpRequest | None) -> str:
    return request.path if request is not None else "?"


@receiver(user_login_failed)
def _audit_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    if request is None or getattr(request, "axes_locked_out", False):
        return  # a locked-out try is recorded by _audit_lockout
    username = str(credentials.get("username") or "")[:150]
    record(
        Actor(user=AnonymousUser(), source_address=_source(request)),
        LOGIN_FAILED,
        tenant=None,
        result=AuditLog.Result.DENIED,
        message=f"wrong password for {username!r} at {_where(request)}",
    )


@receiver(user_logged_in)
def _clear_own_failures(sender: Any, user: AbstractBaseUser, **_: Any) -> None:
    AccessAttempt.objects.filter(username=user.get_username()).delete()


@receiver(user_locked_out)
def _audit_lockout(
    sender: Any, request: HttpRequest | None = None, username: str | None = None, **_: Any
) -> None:
    record(
        Actor(user=AnonymousUser(), source_address=_source(request)),
        LOCKED_OUT,
        tenant=None,
        result=AuditLog.Result.DENIED,
        message=f"login for {str(username or '')[:150]!r} at {_where(request)} refused: locked out",
    )
