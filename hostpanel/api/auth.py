"""Token authentication: ``Authorization: Token <secret>`` (a token made for one tenant)."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from hostpanel.tenants.models import ApiToken
from hostpanel.tenants.services import authenticate_token, hash_token

clock = time.monotonic  # tests move it


def own_copy(token: ApiToken) -> ApiToken:
    """A copy of ``token`` and of the user and tenant read with it, for one request.

    Each instance's fields are immutable values (text, numbers, times), so a copy of each
    instance (its fields, its state and its cache of related objects: Model.__getstate__) is a
    copy of all of it, at a tenth of what ``copy.deepcopy`` pays to find that out.
    """
    fresh = copy.copy(token)
    related = fresh._state.fields_cache
    for name, value in related.items():
        related[name] = copy.copy(value)
    return fresh


class TokenCache:
    """The tokens this process authenticated lately, each reused for ``HOSTPANEL_TOKEN_CACHE_SECONDS``.

    Reading a token, its user, tenant and role is half the work of a small API request;
    a client that sends many requests pays it once per bound. Entries are keyed by the
    secret's digest and hold the token as read (with its user, tenant and role); each
    request gets its own copy. A token that expires meanwhile is refused at once; a
    revocation, a disabled user or a role change is seen when the entry ends.
    """

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiToken]] = {}
        self._lock = threading.Lock()

    def authenticate(self, secret: str) -> ApiToken | None:
        """The active token with this secret, from the cache while fresh, else from the database."""
        seconds = settings.HOSTPANEL_TOKEN_CACHE_SECONDS
        if seconds <= 0:
            return authenticate_token(secret)
        digest, now = hash_token(secret), clock()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            token = entry[1]
            return own_copy(token) if token.is_active else None
        token = authenticate_token(secret)
        with self._lock:
            if token is None:
                self._entries.pop(digest, None)
                return None
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[digest] = (now + seconds, own_copy(token))
        return token

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


token_cache = TokenCache()


class TokenAuthentication(authentication.BaseAuthentication):
    """``request.user`` is the token's user, ``request.auth`` the :class:`ApiToken`."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("give 'Authorization: Token <secret>' with one secret")
        try:
            secret = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("the token is not valid text") from exc
        token = token_cache.authenticate(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
