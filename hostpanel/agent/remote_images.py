"""The image of a replica on a host agent (it holds no database): pulled, or its upload fetched.

An image the engine lacks is pulled from
the panel's registry when the document names it there (``images``, with the document's
``pull_token``), else (or if that pull fails) its uploaded archive is imported when the document
names one (``archives``: its sha256 and size, :mod:`hostpanel.deployments.host_images`). The archive
comes from ``GET /internal/v1/images/archive?reference=...``, which serves only the images of this
host's own replicas; it is streamed into a private file of the agent's scratch directory (its
state directory's ``scratch``, 0700), refused past the size the document gives (at most an
upload's :data:`MAX_UPLOAD_BYTES`) or if its sha256 differs, imported with the engine's hardened
import under exactly the reference (its tenant's own in its namespace, else a base image) and
removed after.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import IO, Any

from engine.engine import Engine
from engine.errors import EngineError, ImageNotFound
from engine.images.namespace import namespace_of
from engine.images.reference import normalize_tag
from hostpanel.agent import credentials
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.images.services import MAX_UPLOAD_BYTES

log = logging.getLogger(__name__)
SCRATCH = "scratch"
PREFIX = "image-"


def ensure_image(
    engine: Engine, client: InternalClient, doc: dict[str, Any], reference: str, tenant: str, agent_dir: Path
) -> None:
    """Bring image ``reference`` into ``engine`` the first time a container of ``tenant`` needs it:
    pulled from the panel's registry, else its uploaded archive imported; ImageNotFound if the
    document names neither. ``agent_dir``: the agent's state directory (the download goes under it)."""
    try:
        engine.image(reference, tenant=tenant)
        return
    except ImageNotFound:
        source = doc["images"].get(reference)
        archive = doc["archives"].get(reference)
        if source is None and archive is None:
            raise
    owner = tenant if normalize_tag(reference).startswith(namespace_of(tenant)) else None
    if source is not None:
        try:
            pull_image(engine, reference, owner, source, doc["pull_token"])
            return
        except EngineError as exc:
            if archive is None:
                raise
            log.warning("pulling %s from the registry failed (%s); importing its upload", reference, exc)
    import_upload(engine, client, reference, owner, archive, agent_dir)


def import_upload(
    engine: Engine,
    client: InternalClient,
    reference: str,
    owner: str | None,
    archive: dict[str, Any],
    agent_dir: Path,
) -> None:
    """Fetch the uploaded archive of ``reference`` (``archive``: its ``sha256`` and ``size`` from the
    document) into a private temporary file under ``agent_dir``'s scratch directory, check it and
    import it as ``owner``'s (None: a base image); the file is removed after, whatever happens."""
    directory = credentials.state_dir(agent_dir / SCRATCH)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=PREFIX, suffix=".tar") as out:
        checked = _Checked(out, reference, int(archive["size"]))
        client.image_archive(reference, checked)  # type: ignore[arg-type]  # write() is all it uses
        checked.verify(str(archive["sha256"]))
        out.flush()
        log.info("importing uploaded image %s (%d bytes)", reference, checked.size)
        engine.images.import_archive(Path(out.name), reference, tenant=owner)


class _Checked:
    """A writer of the download that refuses it past ``size`` bytes (at most an upload's bound) and
    hashes what it writes."""

    def __init__(self, out: IO[bytes], reference: str, size: int) -> None:
        self.out = out
        self.reference = reference
        self.limit = min(size, MAX_UPLOAD_BYTES)
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise PanelError(f"the archive of {self.reference} from the panel exceeds its {self.limit} bytes")
        self.digest.update(data)
        return self.out.write(data)

    def verify(self, sha256: str) -> None:
        """PanelError unless the whole archive came, with the ``sha256`` the document gives."""
        if self.size != self.limit or self.digest.hexdigest() != sha256:
            raise PanelError(
                f"the archive of {self.reference} from the panel is not the one uploaded"
                f" ({self.size} bytes, sha256 {self.digest.hexdigest()})"
            )


def pull_image(engine: Engine, reference: str, owner: str | None, source: dict[str, str], token: str) -> None:
    """Pull ``reference`` from the panel's registry (``source``: registry_url, repository, tag,
    digest) with an agent pull ``token``, fetching only the layers this host lacks."""
    from engine.registry import Credentials, RemoteRef, parse_registry_url

    endpoint = parse_registry_url(source["registry_url"])
    remote = RemoteRef(endpoint, source["repository"], source["tag"], source["digest"])
    credentials = Credentials("hostpanel-agent", token, source="this agent's pull token")
    report = engine.pull(remote, credentials=credentials, tag_as=reference, tenant=owner)
    log.info(
        "pulled image %s from %s: %d blobs downloaded (%d bytes), %d already on this host",
        reference,
        remote,
        len(report.transferred),
        report.bytes_transferred,
        len(report.skipped),
    )
