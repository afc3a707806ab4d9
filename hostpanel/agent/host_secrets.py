"""Secret values on an enrolled host: fetched sealed from the panel's internal API, opened here.

An enrolled agent (``HOSTPANEL_AGENT_STATE_DIR``: its ``credentials.json`` and ``host.key``)
never decrypts a tenant secret with the panel's keys: it asks ``GET
/internal/v1/replicas/<id>/secrets`` with its host token, which answers only for a replica placed
on this host, each value sealed to this host's X25519 public key for that replica and name
(:mod:`hostpanel.secrets.sealing`), and opens them with the private key that never left this host.
A host that is not enrolled (tests' agents, ``make run``'s local agent) has no state directory.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from hostpanel.agent import credentials as store
from hostpanel.secrets import sealing

ENV_STATE_DIR = "HOSTPANEL_AGENT_STATE_DIR"


def state_dir() -> Path | None:
    """This agent's state directory if the host is enrolled, else None."""
    value = os.environ.get(ENV_STATE_DIR, "")
    return Path(value) if value else None


def open_secrets(
    private: sealing.X25519PrivateKey, replica_id: int, sealed: dict[str, str]
) -> dict[str, str]:
    """The values of ``sealed`` (name -> base64 box), each bound to ``replica_id`` and its name."""
    values = {}
    for name, box in sealed.items():
        try:
            raw = base64.b64decode(box, validate=True)
        except binascii.Error as exc:
            raise sealing.SealError(f"secret {name!r}: not base64") from exc
        aad = sealing.associated_data(replica_id, name)
        values[name] = sealing.open_sealed(private, raw, aad).decode()
    return values


def fetch(directory: Path, replica_id: int, names: list[str]) -> dict[str, str]:
    """The named secrets of ``replica_id``, from the panel, opened with this host's key.

    Raises :class:`store.PanelError` (the panel refused or could not be reached, or a name is
    missing from its answer) or :class:`sealing.SealError` (a box that does not open)."""
    creds = store.load(directory)
    sealed = store.client_for(creds).replica_secrets(replica_id)
    missing = sorted(set(names) - set(sealed))
    if missing:
        raise store.PanelError(f"the panel sent no value for secret(s) {', '.join(missing)}")
    private = sealing.load_private_key((directory / store.KEY_FILE).read_bytes())
    return open_secrets(private, replica_id, {name: sealed[name] for name in names})
