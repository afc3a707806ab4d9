"""A tenant's life, for the apps above that hold its things: they connect here in their
``AppConfig.ready``, so tenants (the bottom of the panel's layers) never imports them."""

from __future__ import annotations

from django.dispatch import Signal

# slug=str: a tenant of this slug is about to be made; a receiver raises Conflict to refuse it.
tenant_creating = Signal()
# actor=Actor, tenant=Tenant: in the deleting transaction, before the tenant's row goes.
tenant_deleting = Signal()
# slug=str: in the same transaction, after the row went.
tenant_deleted = Signal()
# tenant=Tenant (deleted), slug=str: after that transaction committed (files outside the database).
tenant_gone = Signal()
# tenant=Tenant: in the transaction that changed its quota (running containers follow it).
quota_changed = Signal()


# ---- which apps use a resource: asked by the resources, answered by deployments (above them) ----
# kind ("image", "secret" or "volume") as the sender, name=str, tenant=Tenant | None (None: any
# tenant); a receiver returns the names of the apps whose current release uses it.
resource_users = Signal()


def apps_using(kind: str, name: str, tenant: object = None) -> list[str]:
    """The names of the apps whose current release uses the ``kind`` called ``name`` (sorted)."""
    answers = resource_users.send(sender=kind, name=name, tenant=tenant)
    return sorted({app for _, apps in answers for app in apps})


# ---- what a tenant stores: asked by the storage quota (tenants.storage), answered by the apps
# that store it (volumes, images, registry; usage for the hosts' shares) ----
# sender=Tenant, tenant=Tenant; a receiver returns {kind: bytes} for its own kinds of
# tenants.storage.StorageUse ("volumes", "images", "registry", "rootfs", "build_cache").
stored_bytes = Signal()
