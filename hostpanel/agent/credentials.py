"""An enrolled host's credentials on its own disk, and its client of the panel's internal API.

The state directory (0700, default ``/var/lib/hostpanel-agent``) holds ``host.key`` (the host's
X25519 private key, 0600, never sent anywhere) and ``credentials.json`` (0600: the panel's URL,
the host's name, its internal-API token and its Redis URL with its own ACL user). Stdlib only:
the join command runs this before the virtualenv exists.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

DEFAULT_STATE_DIR = Path("/var/lib/hostpanel-agent")
KEY_FILE = "host.key"
CREDENTIALS_FILE = "credentials.json"
FILE_CHUNK = 1024 * 1024
FILE_TIMEOUT = 300.0  # seconds without progress on a file's transfer (a context, an image)


class PanelError(Exception):
    """The panel refused a call (its error message), or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AgentCredentials:
    panel: str
    name: str
    api_token: str
    redis_url: str
    queues: list[str]
    transport_options: dict[str, str] = field(default_factory=dict)
    ca_file: str = ""

    def environment(self) -> dict[str, str]:
        """What the agent's Celery workers read (hostpanel/settings.py, the enrollment block)."""
        return {
            "HOSTPANEL_AGENT_REDIS_URL": self.redis_url,
            "HOSTPANEL_AGENT_TRANSPORT_OPTIONS": json.dumps(self.transport_options),
        }


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start (replacing it atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def state_dir(path: Path) -> Path:
    """``path`` made (or tightened) to mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def save(directory: Path, creds: AgentCredentials) -> Path:
    path = state_dir(directory) / CREDENTIALS_FILE
    write_private(path, json.dumps(asdict(creds), indent=2).encode())
    return path


def load(directory: Path) -> AgentCredentials:
    path = directory / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PanelError(f"{path} is missing: enroll this host first (its join command)") from exc
    return AgentCredentials(**data)


class InternalClient:
    """JSON calls to the panel's /internal/v1/ over HTTPS (``ca_file``: a private CA to trust)."""

    def __init__(self, panel: str, token: str = "", ca_file: str = "", timeout: float = 10) -> None:
        self.base = panel.rstrip("/") + "/internal/v1/"
        self.token = token
        self.timeout = timeout
        self.context = (
            ssl.create_default_context(cafile=ca_file or None) if panel.startswith("https") else None
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        result: dict[str, Any] = json.loads(self._send(method, path, data, headers) or b"{}")
        return result

    def _send(
        self,
        method: str,
        path: str,
        data: bytes | BinaryIO | None,
        headers: dict[str, str],
        into: BinaryIO | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """One request; the answer's body (written to ``into`` instead, if given)."""
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(
                request, timeout=timeout or self.timeout, context=self.context
            ) as response:
                if into is None:
                    return bytes(response.read())
                shutil.copyfileobj(response, into, FILE_CHUNK)
                return b""
        except urllib.error.HTTPError as exc:
            raise PanelError(_error_message(exc), exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PanelError(f"cannot reach the panel at {self.base}: {exc}") from exc

    def download(self, path: str, into: BinaryIO) -> None:
        """GET ``path`` (a file) into ``into``."""
        self._send("GET", path, None, {}, into=into, timeout=FILE_TIMEOUT)

    def upload(self, path: str, source: BinaryIO, size: int) -> dict[str, Any]:
        """POST the ``size`` bytes of ``source`` to ``path``; the JSON answer."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        result: dict[str, Any] = json.loads(
            self._send("POST", path, source, headers, timeout=FILE_TIMEOUT) or b"{}"
        )
        return result

    def heartbeat(self, running: dict[str, int] | None = None) -> dict[str, Any]:
        """Beat; with ``running`` ({replica id: generation} of its containers) the answer's ``fence``
        names the replicas whose containers must go (hosts/fencing.py)."""
        return self.call("POST", "heartbeat", {"running": running} if running else {})

    def me(self) -> dict[str, Any]:
        return self.call("GET", "host")

    def routes(self, after: int) -> dict[str, Any] | None:
        """The last published routing table if newer than generation ``after``, else None (204)."""
        table = self.call("GET", f"host/routes?after={int(after)}")
        return table or None

    def replica_secrets(self, replica_id: int) -> dict[str, str]:
        """The secrets of a replica placed on this host: name -> value sealed to this host's key
        (base64; :mod:`hostpanel.agent.host_secrets` opens them)."""
        secrets: dict[str, str] = self.call("GET", f"replicas/{int(replica_id)}/secrets")["secrets"]
        return secrets

    def desired(self) -> dict[str, Any]:
        """What this host should run (hostpanel/deployments/desired.py: its replicas' specs)."""
        return self.call("GET", "host/desired")

    def report(self, replicas: list[dict[str, Any]]) -> dict[str, Any]:
        """The states of this host's replicas; the answer says which were written."""
        return self.call("POST", "host/report", {"replicas": replicas})

    def claim(self, replica_id: int, generation: int, restart: bool = False) -> bool:
        """Whether this host may replace the replica's running container now (one of an app at a
        time); with ``restart``, whether it takes the request to restart that container (once)."""
        body: dict[str, Any] = {"replica": replica_id, "generation": generation}
        if restart:
            body["restart"] = True
        granted: bool = self.call("POST", "host/claim", body)["granted"]
        return granted

    def start(self, capacity: dict[str, Any]) -> dict[str, Any]:
        """This agent starts: its address and capacity (the host is registered, marked up)."""
        return self.call("POST", "host/start", capacity)

    def usage(self, sample: dict[str, Any]) -> dict[str, Any]:
        """One usage sample of this host's engine (hostpanel/agent/usage.py); the answer says what
        was written and what was ignored (hostpanel/usage/internal.py)."""
        return self.call("POST", "host/usage", sample)

    def purged(self, purged: list[str], failed: dict[str, str]) -> dict[str, Any]:
        """What this host did of the purges its document named (hostpanel/agent/tenant_purge.py);
        the answer says which rows were cleared, which kept the error, which it has none of."""
        return self.call("POST", "host/purged", {"purged": purged, "failed": failed})

    def volumes_deleted(self, held: dict[int, str]) -> dict[str, Any]:
        """Which of the panel volumes this host holds (id -> the proof its document gave) were
        deleted (hostpanel/volumes/internal.py): ``{"deleted": [id], "ignored": [id]}``."""
        return self.call("POST", "host/volumes", {"volumes": {str(pk): proof for pk, proof in held.items()}})

    def exec_finished(self, audit_id: int, exit_code: int | None, reason: str) -> dict[str, Any]:
        """Complete the audit entry of an exec session this host ran (hostpanel/terminal/internal.py)."""
        body = {"exit_code": exit_code, "reason": reason[:500]}
        return self.call("POST", f"exec/{int(audit_id)}/finished", body)

    def image_archive(self, reference: str, into: BinaryIO) -> None:
        """The uploaded archive of image ``reference`` (one a replica placed on this host runs),
        written to ``into``."""
        self.download("images/archive?" + urllib.parse.urlencode({"reference": reference}), into)

    def claim_build(self, build_id: int) -> dict[str, Any]:
        """Mark build ``build_id`` (queued on this host) running; its spec (builds/spec.BuildSpec)."""
        return self.call("POST", f"builds/{int(build_id)}/claim", {})

    def build_context(self, build_id: int, into: BinaryIO) -> None:
        """The context upload of a running build of this host, written to ``into``."""
        self.download(f"builds/{int(build_id)}/context", into)

    def build_output(self, build_id: int, lines: list[dict[str, str]]) -> dict[str, Any]:
        """Lines a running build printed (``{"stream", "text"}``), stored and sent to live viewers."""
        return self.call("POST", f"builds/{int(build_id)}/output", {"lines": lines})

    def build_image(self, build_id: int, source: BinaryIO, size: int) -> dict[str, Any]:
        """The exported image of a running build (stored as its tenant's ``<slug>/<name>``)."""
        return self.upload(f"builds/{int(build_id)}/image", source, size)

    def finish_build(self, build_id: int, error: str) -> dict[str, Any]:
        """The end of a running build: succeeded when ``error`` is empty."""
        return self.call("POST", f"builds/{int(build_id)}/finish", {"error": error})


def _error_message(exc: urllib.error.HTTPError) -> str:
    raw = exc.read()
    try:
        return f"{exc.code}: {json.loads(raw)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{exc.code}: {raw[:300].decode(errors='replace')}"


def client_for(creds: AgentCredentials) -> InternalClient:
    return InternalClient(creds.panel, creds.api_token, creds.ca_file)
