"""Row locks that make the tenant's quota checks hold under concurrency (PostgreSQL and SQLite)."""

from __future__ import annotations

from django.db import transaction

from hostpanel.tenants.models import Tenant


def lock_tenant(tenant: Tenant) -> None:
    """Lock ``tenant``'s row until the caller's transaction ends: quota checks of one tenant then
    run one at a time, each seeing what the one before it made.

    Take it before reading what the tenant uses. PostgreSQL needs the row lock (``SELECT ... FOR
    UPDATE``), since two transactions under READ COMMITTED would each count without the other's
    uncommitted rows and both pass; SQLite's IMMEDIATE transactions serialize writers anyway.
    Raises TransactionManagementError outside ``transaction.atomic()`` (on every database, so
    SQLite runs catch a caller that forgot it).
    """
    require_atomic("lock_tenant()")
    Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk", flat=True).first()


def require_atomic(what: str) -> None:
    """TransactionManagementError unless inside ``transaction.atomic()``: a row lock taken outside
    one would end with its statement (Django refuses it on PostgreSQL only; this says so everywhere)."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError(f"{what} needs transaction.atomic()")
