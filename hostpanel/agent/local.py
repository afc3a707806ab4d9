"""The panel machine's own host agent, enrolled in-process (`manage.py enroll_local`, which
`make run` runs before it starts the agent).

The local agent is an enrolled host like any other: its own X25519 key pair (generated here, on
the host side, by the join command's own :func:`join.generate_key`), its internal-API token and
its own Redis ACL user in ``credentials.json`` (0600) in its state directory, and it runs without
the database, the panel's Redis password or the panel's secret keys (scripts/run.sh starts it
with an environment without them). Only the registration differs from a remote host's join: the
panel and the host are the same machine, so this command spends a fresh join token through the
very service the register endpoint calls (:func:`enrollment.register`), in-process: no token
travels, over the network or through a log.

Idempotent: credentials that still authenticate are reused (their panel URL updated, the host's
Redis user made again should Redis have lost it); credentials that are gone, damaged, revoked or
of another host name are replaced by a clean enrollment (a live credential of the host that
nothing here holds is revoked first). A failure leaves no credentials file behind.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hostpanel.agent import credentials as store
from hostpanel.agent import join
from hostpanel.errors import ServiceError
from hostpanel.hosts import enrollment, redis_acl
from hostpanel.hosts.models import HostCredential


class LocalEnrollError(Exception):
    """The local enrollment failed; the message says why and what to do."""


@dataclass(frozen=True)
class LocalEnrollment:
    credentials: store.AgentCredentials
    enrolled: bool  # True: enrolled now; False: the credentials already there were reused
    why: str  # what this run found (for the log line)


def is_local_address(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine's: loopback, or an address one of
    its interfaces has (it can bind it), so plain HTTP to it never leaves the machine."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address.is_loopback:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((sockaddr[0], 0))
        except OSError:
            return False
    return bool(infos)


def check_panel_url(panel: str) -> None:
    """``panel`` must be https://, or http:// to this machine (the local agent only)."""
    parts = urlsplit(panel)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_local_address(parts.hostname):
        return
    raise LocalEnrollError(
        f"--panel {panel}: give the panel's https:// URL, or http:// to this machine's own address "
        "(a loopback address for the local agent)"
    )


def _usable(state: Path, name: str) -> tuple[store.AgentCredentials | None, str]:
    """The credentials in ``state`` if they are ``name``'s and live, else None and why not."""
    try:
        creds = store.load(state)
    except store.PanelError:
        return None, "no credentials yet"
    except (ValueError, TypeError) as exc:
        return None, f"unreadable credentials ({exc})"
    if creds.name != name:
        return None, f"credentials of host {creds.name}, not {name}"
    host = enrollment.authenticate(creds.api_token)
    if host is None or host.name != name:
        return None, "credentials revoked or unknown to this panel"
    return creds, "credentials reused"


def enroll(name: str, state: Path, panel: str) -> LocalEnrollment:
    """Enroll host ``name`` with its key pair and credentials in ``state`` (0700), its agent to
    reach the panel at ``panel``; reuse the credentials there if they still authenticate."""
    check_panel_url(panel)
    creds, why = _usable(state, name)
    if creds is not None:
        credential = HostCredential.objects.get(host__name=name, revoked_at=None)
        try:  # Redis restarted (`make stop`, `make run`): its ACL users are gone
            redis_acl.ensure_host_user(name, credential.redis_password_hash)
        except redis_acl.BrokerUnavailable as exc:
            raise LocalEnrollError(exc.message) from exc
        if creds.panel != panel:
            creds = join.save_credentials(state, panel, asdict(creds) | {"queues": creds.queues})
        return LocalEnrollment(creds, False, why)
    key_file = state / store.KEY_FILE
    (state / store.CREDENTIALS_FILE).unlink(missing_ok=True)  # stale: never left beside a new key
    try:
        if HostCredential.objects.filter(host__name=name, revoked_at=None).exists():
            enrollment.revoke(None, name)  # live credentials nothing here holds any more
        invitation = enrollment.add_host(None, name)
        registered = enrollment.register(invitation.token, join.generate_key(state))
    except ServiceError as exc:
        key_file.unlink(missing_ok=True)
        raise LocalEnrollError(exc.message) from exc
    except Exception:  # the database: the command says so; no key without its credentials
        key_file.unlink(missing_ok=True)
        raise
    answer = asdict(registered)
    creds = join.save_credentials(state, panel, answer)
    return LocalEnrollment(creds, True, why)
