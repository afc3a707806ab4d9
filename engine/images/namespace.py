"""Who owns an image name: one tenant, or the operator's base set.

Every tag in the store belongs to one tenant or to the operator's base set.

- A tenant operation (``tenant="acme"``) creates and moves only tags in the
  tenant's namespace, ``acme/<name>:<tag>``, and they belong to the tenant.
  It reads the tenant's own tags and the base set, and, by id, the images the
  tenant stored itself (a build step's untagged image); nothing else exists
  for it.
- An operator call (``tenant=None``) reads everything; the tags it writes
  belong to the base set. Only operator calls change base tags.

These are pure rules over :class:`~engine.images.layout.ImageRecord`; the
store applies them under its index lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from engine.errors import Conflict, InvalidReference
from engine.images.layout import ImageRecord
from engine.runtime.idmap import validate_tenant


def namespace_of(tenant: str) -> str:
    """The name prefix of ``tenant``'s images (``acme/``); raises InvalidSpec for a bad tenant name."""
    return f"{validate_tenant(tenant)}/"


def readable_tags(record: ImageRecord, tenant: str | None) -> tuple[str, ...]:
    """The tags of ``record`` that ``tenant`` can see: its own and the base set (all for the operator)."""
    if tenant is None:
        return record.tags
    return tuple(t for t in record.tags if record.owners.get(t, tenant) == tenant)


def tags_of_deleted_tenant(record: ImageRecord, tenant: str) -> tuple[str, ...]:
    """The tags of ``record`` that go with ``tenant`` when it is deleted.

    Its own tags, and base tags in its namespace (``acme/...`` written by an
    operator call or stored before names had owners): nobody else may use
    that namespace, and a later tenant with the same slug must not inherit them.
    """
    prefix = namespace_of(tenant)
    owners = record.owners
    return tuple(t for t in record.tags if owners.get(t, tenant if t.startswith(prefix) else None) == tenant)


def can_read(record: ImageRecord, tenant: str | None) -> bool:
    """Whether ``tenant`` may use ``record`` at all (by one of its tags, or by id as a holder)."""
    return tenant is None or tenant in record.holders or bool(readable_tags(record, tenant))


def visible(records: Iterable[ImageRecord], tenant: str | None) -> list[ImageRecord]:
    """The records ``tenant`` can use, each showing only the tags it can see."""
    out = []
    for r in records:
        if can_read(r, tenant):
            tags = readable_tags(r, tenant)
            out.append(r if tags == r.tags else r.with_tags(tags, r.owners))
    return out


def check_writable(records: Sequence[ImageRecord], tags: Iterable[str], tenant: str | None) -> None:
    """Raise unless ``tenant`` may create or move every tag of ``tags`` (normalised ``name:tag``).

    InvalidReference for a tag outside the tenant's namespace; Conflict for a
    tag in it that the operator made a base image. The operator may write any tag.
    """
    if tenant is None:
        return
    prefix = namespace_of(tenant)
    for tag in tags:
        if not tag.startswith(prefix):
            raise InvalidReference(
                f"tenant {tenant!r} cannot name an image {tag!r}: its images are named "
                f"{prefix}<name>:<tag>; base images are changed only by the operator"
            )
        for r in records:
            if tag in r.tags and r.owners.get(tag) != tenant:
                raise Conflict(
                    f"{tag!r} is a base image and only the operator can change it; choose another name"
                )


def with_tags_written(
    record: ImageRecord, tags: Iterable[str], tenant: str | None, *, holder: bool = False
) -> ImageRecord:
    """``record`` with ``tags`` added (owned by ``tenant``; base tags for the operator).

    With ``holder``, ``tenant`` is also recorded as having stored the image.
    """
    new = tuple(t for t in tags if t not in record.tags)
    owners = dict(record.owners)
    for t in tags:
        if tenant is None:
            owners.pop(t, None)
        else:
            owners[t] = tenant
    holders = record.holders
    if holder and tenant is not None and tenant not in holders:
        holders = (*holders, tenant)
    return replace(record.with_tags((*record.tags, *new), owners), holders=holders)
