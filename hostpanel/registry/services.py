"""Business rules of the registry: who may pull/push what, uploads, manifests, tags, deletes.

Views (views.py) only translate HTTP to these calls. Every function takes the
calling :class:`~hostpanel.registry.auth.Principal` and a repository name and
raises a :class:`~hostpanel.registry.errors.RegistryError` the view answers in
the spec's error format. Pushes and deletes (and refused ones) go in the audit log.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine.errors import InvalidReference
from engine.images.blobs import StagedBlob
from engine.images.digest import sha256_digest
from engine.images.oci import INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, MT_MANIFEST
from engine.images.reference import DIGEST_RE, normalize_tag, split_tag
from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor, audited, record
from hostpanel.errors import QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.registry import storage
from hostpanel.registry.auth import (
    LIBRARY,
    PULL,
    Operation,
    Principal,
    challenge_scope,
    permitted_actions,
    role_actions,
    sign_agent_token,
)
from hostpanel.registry.errors import (
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    Denied,
    DigestInvalid,
    InUse,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    RangeNotSatisfiable,
    RegistryError,
    SizeInvalid,
    Unauthorized,
)
from hostpanel.registry.images import publish_image, unpublish_images
from hostpanel.registry.models import BlobLink, Manifest, ManifestReference, Repository, Tag, Upload
from hostpanel.registry.storage import Readable
from hostpanel.tenants.models import Tenant
from hostpanel.tenants.storage import check_storage, sum_of

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})+$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
MANIFEST_MEDIA_TYPES = (*MANIFEST_TYPES, *INDEX_TYPES)
MAX_MANIFEST_BYTES = 4 << 20
_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?$")


@dataclass(frozen=True)
class Access:
    """What an authorized caller may do in one repository (its tenant is None under library/)."""

    principal: Principal
    name: str
    tenant: Tenant | None
    actions: frozenset[str]

    @property
    def actor(self) -> Actor:
        return self.principal.actor


# ---- access -------------------------------------------------------------------------------
def check_name(name: str) -> None:
    """NameInvalid unless ``name`` is ``<namespace>/<name>[/...]`` in the spec's grammar."""
    if len(name) > 255 or not NAME_RE.match(name):
        raise NameInvalid(
            f"invalid repository name {name!r}: use <tenant>/<name> in lowercase letters, digits and "
            "separators (., _, __, -), at most 255 characters"
        )


def authorize(principal: Principal, name: str, operation: Operation) -> Access:
    """The access to ``name`` if the principal may take ``operation`` (its action) there.

    Every request is authorized once, with the action its operation requires.
    A repository the caller may not even pull is NAME_UNKNOWN whether it exists
    or not (another tenant's repositories are never revealed); a bearer token
    lacking the scope is UNAUTHORIZED with a challenge naming it (the client
    fetches a wider token, which it gets only if its role allows the action);
    basic credentials that may read but not write get DENIED. A refused write
    is written to the audit log.
    """
    try:
        return _authorize(principal, name, operation.action)
    except RegistryError as exc:
        if operation.action != PULL:
            record(
                principal.actor, operation.audit, tenant=None, result=AuditLog.Result.DENIED, message=str(exc)
            )
        raise


def _authorize(principal: Principal, name: str, action: str) -> Access:
    check_name(name)
    actions = permitted_actions(principal, name)
    namespace = name.split("/", 1)[0]
    tenant = None if namespace == LIBRARY else Tenant.objects.filter(slug=namespace).first()
    if action in actions:
        return Access(principal, name, tenant, actions)
    who = "administrators" if namespace == LIBRARY else "developers and owners of the tenant"
    if principal.via_bearer:
        if action in role_actions(principal, name):
            hint = "get one for that scope from /v2/token"
        elif action == PULL:
            hint = "you may not access it; repositories are named <your tenant>/<name>"
        else:
            hint = f"only {who} may {action} there"
        raise Unauthorized(
            f"this token does not grant {action} on {name!r}; {hint}",
            {"scope": challenge_scope(name, action), "insufficient_scope": True},
        )
    if PULL not in actions:
        raise NameUnknown(
            f"repository {name!r} is not known to the registry or you may not access it; "
            "repositories are named <your tenant>/<name>"
        )
    raise Denied(f"you may pull {name!r} but not {action} it: only {who} may")


def _repository(name: str) -> Repository | None:
    return Repository.objects.filter(name=name).first()


def _ensure_repository(access: Access) -> Repository:
    repo, _ = Repository.objects.get_or_create(name=access.name, defaults={"tenant": access.tenant})
    return repo


def _check_digest(digest: str | None) -> str:
    if not digest or not DIGEST_RE.match(digest):
        raise DigestInvalid(f"invalid digest {digest!r}: give sha256:<64 lowercase hex digits>")
    return digest


# ---- blobs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlobFile:
    digest: str
    size: int
    path: Path


def get_blob(access: Access, digest: str) -> BlobFile:
    """A blob the repository links (or one of its manifests); BLOB_UNKNOWN otherwise."""
    name = access.name
    _check_digest(digest)
    linked = BlobLink.objects.filter(repository__name=name, digest=digest).exists()
    if not linked and not Manifest.objects.filter(repository__name=name, digest=digest).exists():
        raise BlobUnknown(f"blob {digest} is not in repository {name!r}")
    store = storage.blob_store()
    path = store.path(digest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BlobUnknown(f"blob {digest} of {name!r} is missing from the store; push it again") from None
    return BlobFile(digest, size, path)


def delete_blob(access: Access, digest: str) -> None:
    """Unlink a blob from the repository (GC frees the bytes); refused (405) while a manifest needs it."""
    name = access.name
    _check_digest(digest)
    with audited(access.actor, Operation.DELETE_BLOB.audit, access.tenant) as entry, transaction.atomic():
        link = BlobLink.objects.filter(repository__name=name, digest=digest).first()
        if link is None:
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}")
        entry.obj = link.repository
        user = ManifestReference.objects.filter(manifest__repository=link.repository, digest=digest).first()
        if user is not None:
            raise InUse(
                f"blob {digest} is used by manifest {user.manifest.digest}; delete that manifest first",
                allow="GET, HEAD",
            )
        link.delete()


def mount_blob(access: Access, digest: str, source: str) -> bool:
    """Link ``digest`` from repository ``source`` into ``name`` if the caller may read it there.

    Returns False (the caller then starts an ordinary upload) when the source is
    unreadable to the caller, does not hold the blob, or is not a valid name.
    """
    _check_digest(digest)
    try:
        authorize(access.principal, source, Operation.READ_MOUNT_SOURCE)
    except RegistryError:
        return False
    link = BlobLink.objects.filter(repository__name=source, digest=digest).first()
    if link is None:
        return False
    with storage.gc_lock(exclusive=False):
        if not storage.blob_store().exists(digest):
            return False
        with transaction.atomic():
            repo = _ensure_repository(access)
            BlobLink.objects.get_or_create(repository=repo, digest=digest, defaults={"size": link.size})
    return True


# ---- uploads ------------------------------------------------------------------------------
def _expired(upload: Upload) -> bool:
    return upload.updated_at < timezone.now() - timedelta(seconds=settings.HOSTPANEL_REGISTRY_UPLOAD_TTL)


def start_upload(access: Access) -> Upload:
    """Open an upload session (its bytes go to the upload area, not the repository)."""
    upload = Upload.objects.create(repository_name=access.name, tenant=access.tenant)
    try:
        storage.create_upload_file(str(upload.id))
    except BaseException:
        upload.delete()
        raise
    return upload


def get_upload(access: Access, upload_id: str) -> Upload:
    """An upload of the repository in progress; BLOB_UPLOAD_UNKNOWN if missing, finished or expired."""
    name = access.name
    try:
        key = uuid.UUID(upload_id)
    except ValueError:
        raise BlobUploadUnknown(f"no upload {upload_id!r} in {name!r}") from None
    upload = Upload.objects.filter(pk=key, repository_name=name).first()
    if upload is None:
        raise BlobUploadUnknown(f"no upload {upload_id!r} in {name!r}: it finished, was cancelled or expired")
    if _expired(upload):
        _drop_upload(upload)
        raise BlobUploadUnknown(f"upload {upload_id!r} expired; start a new one")
    return upload


def _drop_upload(upload: Upload) -> None:
    storage.remove_upload_file(str(upload.id))
    upload.delete()


def cancel_upload(access: Access, upload_id: str) -> None:
    _drop_upload(get_upload(access, upload_id))


def upload_headers(name: str, upload: Upload) -> dict[str, str]:
    """Location, Range and Docker-Upload-UUID of an upload in progress."""
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload.id}",
        "Range": f"0-{max(upload.size - 1, 0)}",
        "Docker-Upload-UUID": str(upload.id),
    }


def parse_content_range(value: str) -> tuple[int, int]:
    """``<start>-<end>`` (inclusive) of a chunk; BLOB_UPLOAD_INVALID when malformed."""
    match = _RANGE_RE.match(value.strip())
    if not match or int(match.group(2)) < int(match.group(1)):
        raise BlobUploadInvalid(
            f"invalid Content-Range {value!r}: give <start>-<end> (inclusive byte offsets)"
        )
    return int(match.group(1)), int(match.group(2))


def append_chunk(
    access: Access,
    upload_id: str,
    body: Readable,
    content_range: str | None,
    content_length: int | None,
) -> Upload:
    """Append a chunk (PATCH, or the body of the closing PUT) to an upload.

    A chunk must start where the upload ends (else 416 with the upload's Range);
    one that is shorter than its Content-Range/Content-Length is refused and cut
    off again, so the upload stays as it was.
    """
    upload = get_upload(access, upload_id)
    expected = content_length
    if content_range:
        start, end = parse_content_range(content_range)
        if start != upload.size:
            exc = RangeNotSatisfiable(
                f"chunk starts at byte {start} but the upload has {upload.size} bytes; "
                "send the chunk that starts there (GET the upload for its Range)"
            )
            exc.headers = upload_headers(access.name, upload)
            raise exc
        if content_length is not None and content_length != end - start + 1:
            raise BlobUploadInvalid(
                f"Content-Length {content_length} does not match Content-Range {content_range!r}"
            )
        expected = end - start + 1
    written = storage.append(str(upload.id), upload.size, body, expected)
    if expected is not None and written != expected:
        storage.truncate(str(upload.id), upload.size)
        raise BlobUploadInvalid(f"the chunk ended after {written} of {expected} bytes; send it again")
    if written and upload.tenant is not None:
        try:
            check_storage(upload.tenant, written, "the blob upload")
        except QuotaExceeded as exc:
            storage.truncate(str(upload.id), upload.size)
            raise Denied(exc.message) from None
    if written:
        upload.size += written
        upload.save(update_fields=["size", "updated_at"])
    return upload


def complete_upload(
    access: Access,
    upload_id: str,
    digest: str | None,
    body: Readable,
    content_range: str | None,
    content_length: int | None,
) -> str:
    """Append the last chunk, check the digest, and move the blob into the store and repository.

    A wrong digest is DIGEST_INVALID and the upload is dropped: nothing is stored.
    """
    try:
        _check_digest(digest)
    except DigestInvalid:
        get_upload(access, upload_id)  # an unknown upload is reported as such first
        raise
    assert digest is not None
    upload = append_chunk(access, upload_id, body, content_range, content_length)
    actual = storage.upload_digest(str(upload.id), upload.size)
    if actual != digest:
        _drop_upload(upload)
        raise DigestInvalid(
            f"the uploaded {upload.size} bytes hash to {actual}, not {digest}; nothing was stored, "
            "upload the blob again"
        )
    with storage.gc_lock(exclusive=False):
        store = storage.blob_store()
        store.root.mkdir(parents=True, exist_ok=True)
        store.commit(StagedBlob(digest=digest, size=upload.size, path=storage.upload_path(str(upload.id))))
        storage.hashes.forget(str(upload.id))
        with transaction.atomic():
            repo = _ensure_repository(access)
            BlobLink.objects.get_or_create(repository=repo, digest=digest, defaults={"size": upload.size})
            upload.delete()
    return digest


def upload_monolithic(access: Access, digest: str | None, body: Readable, content_length: int | None) -> str:
    """``POST ?digest=``: the whole blob in one request; on any failure no upload is left."""
    _check_digest(digest)
    upload = start_upload(access)
    try:
        return complete_upload(access, str(upload.id), digest, body, None, content_length)
    except BaseException:
        if Upload.objects.filter(pk=upload.pk).exists():
            _drop_upload(upload)
        raise


# ---- manifests ----------------------------------------------------------------------------
def _media_type(content_type: str | None, doc: dict[str, Any]) -> str:
    ct = (content_type or "").split(";", 1)[0].strip()
    declared = doc.get("mediaType")
    if ct in MANIFEST_MEDIA_TYPES:
        if declared and declared != ct:
            raise ManifestInvalid(f"the manifest's mediaType {declared!r} differs from Content-Type {ct!r}")
        return ct
    if ct and ct not in ("application/json", "application/octet-stream"):
        raise ManifestInvalid(
            f"unsupported manifest media type {ct!r}: push an OCI image manifest or index, or a "
            "Docker v2 schema 2 manifest or manifest list"
        )
    if declared in MANIFEST_MEDIA_TYPES:
        return str(declared)
    if declared is None:
        if "manifests" in doc:
            return MT_INDEX
        if "config" in doc:
            return MT_MANIFEST
    raise ManifestInvalid(f"unsupported manifest media type {declared!r}")


def _descriptor(value: Any, where: str) -> tuple[str, int]:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} is not a descriptor object")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ManifestInvalid(f"{where} has digest {digest!r}; only sha256:<64 hex> digests are supported")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where} has no valid size")
    return digest, size


def _references(doc: dict[str, Any], media_type: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(blobs, sub-manifests) the manifest needs; foreign layers (with ``urls``) are not checked."""
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    if media_type in INDEX_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestInvalid("an index needs a 'manifests' list")
        return [], [_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)]
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestInvalid("a manifest needs a 'layers' list")
    blobs = [_descriptor(doc.get("config"), "config")]
    blobs += [
        _descriptor(layer, f"layers[{i}]")
        for i, layer in enumerate(layers)
        if not (isinstance(layer, dict) and layer.get("urls"))
    ]
    return blobs, []


def _read_manifest_body(body: Readable) -> bytes:
    data = body.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise SizeInvalid(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    return data


def put_manifest(access: Access, reference: str, content_type: str | None, body: Readable) -> Manifest:
    """Store a manifest under a tag or its digest after checking everything it refers to.

    DIGEST_INVALID if pushed by a digest it does not hash to; MANIFEST_INVALID
    for bad JSON or an unsupported type; MANIFEST_BLOB_UNKNOWN (with the
    digest) when a config, layer or sub-manifest is not in the repository.
    A tenant's tagged manifest becomes an image the tenant can deploy.
    """
    data = _read_manifest_body(body)
    digest = sha256_digest(data)
    tag: str | None = None
    if reference.startswith("sha256:") or ":" in reference:
        if reference != digest:
            raise DigestInvalid(f"the manifest hashes to {digest}, not {reference}")
    elif TAG_RE.match(reference):
        tag = reference
    else:
        raise ManifestInvalid(f"invalid tag {reference!r}: use up to 128 letters, digits, '_', '.', '-'")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalid(f"the manifest is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestInvalid("the manifest is not a JSON object")
    media_type = _media_type(content_type, doc)
    blobs, children = _references(doc, media_type)
    with audited(access.actor, Operation.PUSH_MANIFEST.audit, access.tenant) as entry:
        with storage.gc_lock(exclusive=False), transaction.atomic():
            repo = _ensure_repository(access)
            entry.obj = repo
            _check_references(repo, blobs, children)
            storage.blob_store().put_bytes(data, digest)
            manifest, _ = Manifest.objects.get_or_create(
                repository=repo, digest=digest, defaults={"media_type": media_type, "size": len(data)}
            )
            ManifestReference.objects.bulk_create(
                [ManifestReference(manifest=manifest, digest=d) for d, _ in blobs + children],
                ignore_conflicts=True,
            )
            if tag is not None:
                Tag.objects.update_or_create(repository=repo, name=tag, defaults={"manifest": manifest})
            entry.obj = manifest
        if tag is not None and (access.tenant is not None or access.name.startswith(LIBRARY + "/")):
            _publish_image(access.actor, access, tag)
    return manifest


def _check_references(
    repo: Repository, blobs: list[tuple[str, int]], children: list[tuple[str, int]]
) -> None:
    store = storage.blob_store()
    sizes = dict(
        BlobLink.objects.filter(repository=repo, digest__in=[d for d, _ in blobs]).values_list(
            "digest", "size"
        )
    )
    for digest, size in blobs:
        if digest not in sizes or not store.exists(digest):
            raise ManifestBlobUnknown(
                f"blob {digest} is not in repository {repo.name!r}; push it before the manifest",
                {"digest": digest},
            )
        if sizes[digest] != size:
            raise ManifestInvalid(f"blob {digest} has {sizes[digest]} bytes, the manifest says {size}")
    known = dict(
        Manifest.objects.filter(repository=repo, digest__in=[d for d, _ in children]).values_list(
            "digest", "size"
        )
    )
    for digest, size in children:
        if digest not in known:
            raise ManifestBlobUnknown(
                f"manifest {digest} is not in repository {repo.name!r}; push it before the index",
                {"digest": digest},
            )
        if known[digest] != size:
            raise ManifestInvalid(f"manifest {digest} has {known[digest]} bytes, the index says {size}")


def get_manifest(access: Access, reference: str) -> Manifest:
    """The manifest of the repository tagged ``reference`` or with that digest; MANIFEST_UNKNOWN otherwise."""
    name = access.name
    manifest: Manifest | None
    if DIGEST_RE.match(reference):
        manifest = Manifest.objects.filter(repository__name=name, digest=reference).first()
    else:
        tag = Tag.objects.select_related("manifest").filter(repository__name=name, name=reference).first()
        manifest = tag.manifest if tag is not None else None
    if manifest is None:
        raise ManifestUnknown(f"no manifest {reference!r} in repository {name!r}")
    return manifest


def manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest's bytes, verified against its digest (engine CorruptBlob if damaged)."""
    return storage.blob_store().read_bytes(manifest.digest, MAX_MANIFEST_BYTES)


def delete_manifest(access: Access, reference: str) -> None:
    """Delete a manifest by digest (with its tags) or just a tag; refused (405) while an index needs it.

    Needs only the delete action (the spec's token flow asks for exactly that
    scope). What the manifest referred to stays linked until its blobs are
    deleted or garbage collection drops the links (see gc.py).
    """

    name = access.name
    with audited(access.actor, Operation.DELETE_MANIFEST.audit, access.tenant) as entry:
        with transaction.atomic():
            manifest = get_manifest(access, reference)
            entry.obj = manifest
            if not DIGEST_RE.match(reference):
                Tag.objects.filter(repository=manifest.repository, name=reference).delete()
                tags = [reference]
            else:
                user = (
                    Manifest.objects.filter(
                        repository=manifest.repository, references__digest=manifest.digest
                    )
                    .exclude(pk=manifest.pk)
                    .first()
                )
                if user is not None:
                    raise InUse(
                        f"manifest {manifest.digest} is part of index {user.digest}; delete that first",
                        allow="GET, HEAD, PUT",
                    )
                tags = list(manifest.tags.values_list("name", flat=True))
                manifest.delete()
        unpublish_images(name, tags)


def list_tags(access: Access, n: int | None, last: str | None) -> tuple[list[str], bool]:
    """Tags of the repository in lexical order after ``last``, at most ``n``; and whether more follow."""
    name = access.name
    repo = _repository(name)
    if repo is None:
        raise NameUnknown(f"repository {name!r} is not known to the registry")
    qs = Tag.objects.filter(repository=repo).order_by("name").values_list("name", flat=True)
    if last:
        qs = qs.filter(name__gt=last)
    if n is None:
        return list(qs), False
    page = list(qs[: n + 1])
    return page[:n], len(page) > n


# ---- the panel side -----------------------------------------------------------------------
def _publish_image(actor: Actor, access: Access, tag: str) -> None:

    publish_image(actor, access.tenant, access.name, tag)


@dataclass(frozen=True)
class PullSource:
    """Where a host agent pulls an image the registry holds."""

    registry_url: str
    repository: str
    tag: str
    digest: str

    @property
    def reference(self) -> str:
        """``<host:port>/<repository>@<digest>`` for a pull client."""
        host = self.registry_url.split("://", 1)[-1].rstrip("/")
        return f"{host}/{self.repository}@{self.digest}"


def pull_source(reference: str) -> PullSource | None:
    """Where to pull ``reference`` (``<tenant>/<name>:<tag>``) from, or None if the registry lacks it."""
    try:
        repository, tag = split_tag(normalize_tag(reference))
    except InvalidReference:
        return None
    found = Tag.objects.select_related("manifest").filter(repository__name=repository, name=tag).first()
    if found is None:
        return None
    return PullSource(settings.HOSTPANEL_REGISTRY_URL, repository, tag, found.manifest.digest)


def agent_pull_token(host: Host | str) -> str:
    """A bearer token host agent ``host`` uses to pull any repository.

    It expires after HOSTPANEL_REGISTRY_AGENT_TOKEN_TTL seconds and stops working
    when the host is deleted. Send it as ``Authorization: Bearer <token>`` (or as
    the password of HTTP basic auth, with any username).
    """
    name = host.name if isinstance(host, Host) else host
    if not Host.objects.filter(name=name).exists():
        raise NameUnknown(f"no host {name!r}")
    return sign_agent_token(name, settings.HOSTPANEL_REGISTRY_AGENT_TOKEN_TTL)


def stored_bytes(sender: object, tenant: Tenant, **kwargs: object) -> dict[str, int]:
    """tenants.signals.stored_bytes (connected in RegistryConfig.ready): the tenant's blobs, each
    counted once per repository that links it, and its uploads in progress."""
    blobs = sum_of(BlobLink.objects.filter(repository__tenant=tenant), "size")
    return {"registry": blobs + sum_of(Upload.objects.filter(tenant=tenant), "size")}
