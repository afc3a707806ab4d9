"""An HTTP client for one registry: connections, redirects, and authentication.

Authentication follows what registries ask for in their 401 answers:

- no challenge answered yet: requests go out anonymously;
- ``Basic``: the credentials are sent with every request;
- ``Bearer realm=..,service=..,scope=..`` (the Docker token flow): the client
  asks the realm for a token for the scopes it needs (with the credentials as
  HTTP basic, if any) and sends it as ``Authorization: Bearer``. Tokens are
  kept per scope; a 401 on a request needing another scope fetches a new one.

Bodies are streamed (files are read in 1 MiB blocks, never loaded whole).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any
from urllib.parse import urlencode, urljoin, urlsplit

from engine.errors import ImageNotFound
from engine.registry.challenge import Challenge, pick_challenge
from engine.registry.credentials import Credentials
from engine.registry.errors import AuthenticationFailed, RegistryError, RegistryUnreachable
from engine.registry.remote import Endpoint

BLOCK = 1 << 20
_MAX_REDIRECTS = 5
_PROBE_TIMEOUT = 3.0
"""Seconds an insecure client waits for a TLS handshake before it tries plain HTTP."""
_LEARNED_SCHEMES: dict[str, str] = {}
"""host:port -> the scheme an insecure client settled on (so later clients do not probe again)."""
_JSON_LIMIT = 8 << 20
USER_AGENT = "hostpanel-hpctl/1"

Body = bytes | Callable[[], Iterator[bytes]] | None
"""A request body: bytes, or a function returning a fresh iterator of blocks (so it can be resent)."""


@dataclass(frozen=True)
class _Outgoing:
    """One request as it goes out (a redirect or the plain-HTTP fallback makes a changed copy)."""

    method: str
    url: str
    headers: Mapping[str, str] | None = None
    body: Body = None
    length: int | None = None
    authorization: str | None = None


@dataclass(frozen=True)
class Response:
    """A response whose body is still to be read (use as a context manager to close it)."""

    status: int
    headers: http.client.HTTPMessage
    raw: http.client.HTTPResponse
    url: str

    def header(self, name: str) -> str:
        """A header's value ('' when absent)."""
        return self.headers.get(name, "") or ""

    def read_limited(self, limit: int = _JSON_LIMIT) -> bytes:
        """The whole body, which must be at most ``limit`` bytes (RegistryError otherwise)."""
        data = self.raw.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"{self.url}: the response is larger than {limit} bytes")
        return data

    def blocks(self) -> Iterator[bytes]:
        """The body in blocks of at most 1 MiB."""
        while chunk := self.raw.read(BLOCK):
            yield chunk

    def close(self) -> None:
        """Close the response and its connection."""
        self.raw.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_detail(data: bytes) -> str:
    """The ``errors`` of a registry error body as 'CODE: message; ...' (the raw text otherwise)."""
    try:
        doc = json.loads(data)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ")
                for e in errors
                if isinstance(e, dict)
            )
    except (ValueError, UnicodeDecodeError):
        pass
    return data[:300].decode(errors="replace").strip()


class RegistryClient:
    """Requests to one registry with the given (or no) credentials.

    ``insecure`` allows plain HTTP and unverified TLS certificates (like
    skopeo's ``--tls-verify=false``): https is tried first and http used when
    the server does not speak TLS. An endpoint with an explicit scheme uses it.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Credentials | None = None,
        *,
        insecure: bool = False,
        timeout: float = 120.0,
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.insecure = insecure
        self.timeout = timeout
        learned = _LEARNED_SCHEMES.get(endpoint.api_host) if insecure else None
        self.scheme = endpoint.scheme or learned or "https"
        self._scheme_fixed = endpoint.scheme is not None or learned is not None or not insecure
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}

    # -- public ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``scheme://host[:port]`` of the API."""
        return f"{self.scheme}://{self.endpoint.api_host}"

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        length: int | None = None,
    ) -> Response:
        """Send a request (``path`` below the API root, or an absolute URL) and return the response.

        Follows redirects, answers 401 challenges (see the module docstring)
        and raises AuthenticationFailed when the registry still refuses, and
        RegistryUnreachable when it cannot be reached. Other statuses are
        returned for the caller to judge.
        """
        scopes = tuple(scopes)
        url = path if "://" in path else self.base_url + path
        response = self._send(_Outgoing(method, url, headers, body, length, self._authorization(scopes)))
        if response.status != 401:
            return response
        challenge_header = response.header("WWW-Authenticate")
        response.close()
        challenge = pick_challenge(challenge_header)
        if challenge is None:
            raise AuthenticationFailed(
                f"registry {self.endpoint.host} refused the request ({method} {urlsplit(url).path}) "
                f"without saying how to authenticate{self._who()}"
            )
        self._challenge = challenge
        wanted = tuple(dict.fromkeys([*scopes, *challenge.params.get("scope", "").split()]))
        if challenge.scheme == "bearer":
            self._fetch_token(challenge, wanted)
        elif self.credentials is None:
            raise self._auth_error(scopes, refused=False)
        url = path if "://" in path else self.base_url + path  # the scheme may have been settled
        response = self._send(_Outgoing(method, url, headers, body, length, self._authorization(wanted)))
        if response.status == 401:
            response.close()
            raise self._auth_error(scopes, refused=True)
        return response

    def check_login(self) -> None:
        """Check that the registry accepts the credentials (``GET /v2/``); raises AuthenticationFailed."""
        with self.request("GET", "/v2/") as r:
            if r.status != 200:
                raise RegistryError(
                    f"registry {self.endpoint.host} answered {r.status} to GET /v2/: "
                    f"{error_detail(r.read_limited())}; is this an OCI registry?"
                )

    def expect(self, response: Response, ok: Iterable[int], what: str, reference: str = "") -> Response:
        """Return ``response`` if its status is in ``ok``; else close it and raise a clear error.

        404 raises ImageNotFound naming ``reference``; 403 AuthenticationFailed; anything
        else RegistryError with the registry's error codes.
        """
        if response.status in tuple(ok):
            return response
        with response:
            detail = error_detail(response.read_limited(1 << 16))
        status = response.status
        if status == 404 and reference:
            raise ImageNotFound(
                f"no image {reference!r} in registry {self.endpoint.host} ({detail or 'not found'}); "
                "check the repository name and tag"
            )
        if status == 403:
            raise AuthenticationFailed(
                f"registry {self.endpoint.host} denied {what} ({detail or 'forbidden'}){self._who()}"
            )
        raise RegistryError(f"registry {self.endpoint.host}: {what} failed with HTTP {status}: {detail}")

    # -- authentication --------------------------------------------------------------------------

    def _who(self) -> str:
        if self.credentials is None:
            return (
                "; no credentials were used: log in with: "
                f"hpctl login {self.endpoint.host} -u USER --password-stdin"
            )
        return (
            f"; credentials of user {self.credentials.username!r} from {self.credentials.source} were used"
            f"; check them or log in again with: hpctl login {self.endpoint.host} -u USER --password-stdin"
        )

    def _auth_error(self, scopes: tuple[str, ...], *, refused: bool) -> AuthenticationFailed:
        need = f" ({' '.join(scopes)})" if scopes else ""
        verb = "refused access" if refused else "requires authentication"
        return AuthenticationFailed(f"registry {self.endpoint.host} {verb}{need}{self._who()}")

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        c = self._challenge
        if c is None:
            return None
        if c.scheme == "basic":
            return self.credentials.basic_header() if self.credentials else None
        token = self._tokens.get(" ".join(sorted(scopes)))
        if token is None:
            # A token covering a superset of the scopes serves too (e.g. pull,push for a pull).
            for key, value in self._tokens.items():
                if set(scopes) <= set(key.split()):
                    token = value
                    break
        if token is None and scopes:
            self._fetch_token(c, scopes)
            token = self._tokens.get(" ".join(sorted(scopes)))
        return f"Bearer {token}" if token else None

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> None:
        realm = challenge.realm
        if not realm.startswith(("http://", "https://")):
            raise AuthenticationFailed(
                f"registry {self.endpoint.host} sent a Bearer challenge without a usable realm ({realm!r})"
            )
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query += [("scope", s) for s in scopes]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        with self._send(_Outgoing("GET", url, headers)) as r:
            data = r.read_limited(1 << 20)
            if r.status in (401, 403):
                raise self._auth_error(scopes, refused=self.credentials is not None)
            if r.status != 200:
                raise RegistryError(
                    f"the token service of {self.endpoint.host} ({realm}) answered HTTP {r.status}: "
                    f"{error_detail(data)}"
                )
        try:
            doc = json.loads(data)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.endpoint.host} ({realm}) returned no token")
        self._tokens[" ".join(sorted(scopes))] = token

    # -- transport -------------------------------------------------------------------------------

    def _send(self, out: _Outgoing) -> Response:
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._send_once(out)
            if response.status not in (301, 302, 303, 307, 308) or not response.header("Location"):
                return response
            response.close()
            target = urljoin(out.url, response.header("Location"))
            if urlsplit(target).netloc != urlsplit(out.url).netloc:
                out = replace(out, authorization=None)  # no registry credentials to blob storage elsewhere
            if response.status == 303:
                out = replace(out, method="GET", body=None, length=None)
            out = replace(out, url=target)
        raise RegistryError(f"registry {self.endpoint.host}: too many redirects for {out.method} {out.url}")

    def _send_once(self, out: _Outgoing) -> Response:
        method, url, body, length = out.method, out.url, out.body, out.length
        parts = urlsplit(url)
        all_headers = {"User-Agent": USER_AGENT, **(out.headers or {})}
        if out.authorization:
            all_headers["Authorization"] = out.authorization
        if body is None:
            if method in ("POST", "PUT", "PATCH"):
                all_headers.setdefault("Content-Length", "0")
        elif isinstance(body, bytes):
            all_headers["Content-Length"] = str(len(body))
        elif length is not None:
            all_headers["Content-Length"] = str(length)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn = self._connection(parts.scheme, parts.netloc)
            try:
                conn.putrequest(method, target or "/", skip_accept_encoding=True)
                for k, v in all_headers.items():
                    conn.putheader(k, v)
                conn.endheaders()
                if isinstance(body, bytes):
                    conn.send(body)
                elif body is not None:
                    for block in body():
                        conn.send(block)
                raw = conn.getresponse()
            except BaseException:
                conn.close()
                raise
        except (OSError, http.client.HTTPException) as exc:
            probing = not self._scheme_fixed and parts.scheme == "https"
            if probing and parts.netloc == self.endpoint.api_host:
                # --tls-verify=false and no TLS answer: try plain HTTP (as docker does for insecure ones)
                self.scheme, self._scheme_fixed = "http", True
                _LEARNED_SCHEMES[parts.netloc] = "http"
                return self._send_once(replace(out, url="http" + url[len("https") :]))
            raise self._unreachable(exc, tls=isinstance(exc, ssl.SSLError)) from None
        if parts.netloc == self.endpoint.api_host and not self._scheme_fixed:
            self._scheme_fixed = True
            _LEARNED_SCHEMES[parts.netloc] = parts.scheme
        return Response(raw.status, raw.headers, raw, url)

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=BLOCK)
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        timeout = self.timeout if self._scheme_fixed else min(self.timeout, _PROBE_TIMEOUT)
        return http.client.HTTPSConnection(netloc, timeout=timeout, context=context, blocksize=BLOCK)

    def _unreachable(self, exc: BaseException, *, tls: bool = False) -> RegistryUnreachable:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, socket.timeout | TimeoutError):
            reason = f"no answer within {self.timeout:.0f}s"
        hint = "check the address and that the registry is running"
        if tls and not self.insecure:
            hint += (
                "; for a registry without a trusted TLS certificate (or plain HTTP) use --tls-verify=false"
            )
        return RegistryUnreachable(f"cannot reach registry {self.endpoint.host} ({reason}); {hint}")


def json_body(response: Response, what: str) -> Any:
    """The response body parsed as JSON; RegistryError if it is not JSON."""
    try:
        return json.loads(response.read_limited())
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{what}: the registry's answer is not JSON") from None


def file_blocks(f: IO[bytes], length: int) -> Iterator[bytes]:
    """Up to ``length`` bytes of ``f`` from its current position, in blocks."""
    left = length
    while left > 0:
        chunk = f.read(min(BLOCK, left))
        if not chunk:
            break
        left -= len(chunk)
        yield chunk
