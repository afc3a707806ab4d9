"""Registry credentials and the file `hpctl login` keeps them in.

The file is ``<engine root>/auth.json`` (mode 0600, root's like the rest of
the engine root), in the format docker and podman use::

    {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"}}}

Keeping it under the engine root means each engine (and each test root) has
its own logins, and the host agent never reads a user's home directory.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidSpec
from engine.fsutil import atomic_write_bytes, file_lock

AUTH_FILE_NAME = "auth.json"


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry; ``source`` says where they came from."""

    username: str
    password: str
    source: str = "the command line"

    def basic_header(self) -> str:
        """The value of an ``Authorization: Basic ...`` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:  # never print a password
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def parse_credentials(text: str) -> Credentials:
    """``USER:PASSWORD`` (as ``--creds`` takes it); raises InvalidSpec without a colon."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise InvalidSpec("credentials must be USER:PASSWORD (the password may be an API token)")
    return Credentials(user, password)


class AuthFile:
    """The logins of one engine root (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"auths": {}}
        except (OSError, ValueError) as exc:
            raise InvalidSpec(
                f"the login file {self.path} is unreadable ({exc}); remove it and log in again"
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
            raise InvalidSpec(f"the login file {self.path} is malformed; remove it and log in again")
        doc.setdefault("auths", {})
        return doc

    def get(self, registry: str) -> Credentials | None:
        """The stored credentials for ``registry`` (host[:port]), or None."""
        entry = self._load()["auths"].get(registry.lower())
        if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
            return None
        try:
            user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidSpec(
                f"the login for {registry} in {self.path} is malformed; log in again with: "
                f"hpctl login {registry} -u USER --password-stdin"
            ) from None
        return Credentials(user, password, source=str(self.path))

    def set(self, registry: str, credentials: Credentials) -> None:
        """Store (replace) the login for ``registry``; the file is written atomically with mode 0600."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            doc = self._load()
            raw = f"{credentials.username}:{credentials.password}".encode()
            doc["auths"][registry.lower()] = {"auth": base64.b64encode(raw).decode()}
            self._write(doc)

    def remove(self, registry: str) -> bool:
        """Forget the login for ``registry``; returns whether there was one."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            doc = self._load()
            found = doc["auths"].pop(registry.lower(), None) is not None
            if found:
                self._write(doc)
            return found

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), 0o600)
