"""Token authentication: ``Authorization: Token <secret>`` (a token made for one tenant)."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from hostpanel.tenants.models import ApiToken
from hostpanel.tenants.services import authenticate_token


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
        token = authenticate_token(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
