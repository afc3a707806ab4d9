"""Which tenant lists are answered again from a kept answer, and what each one's answer shows.

Each list is a *group* (hostpanel/api/answer_cache.py) with its own generation, moved on by
committed writes to the tables its SQL reads, each with the columns it shows or sorts by
(test_answer_cache.py and test_kept_lists.py check these against the lists' SQL). An UPDATE
that names none of a group's columns of that table leaves the group's answers kept; a write to
a table a group does not read never moves it (an audit entry, written on every action, moves
the audit list alone).

A viewset takes :class:`KeptList` (before its other mixins) and names its group; its access is
checked in ``initial`` before any kept answer is used, as always. The key is the group, the
tenant and the full URL (its page, filters and host); the tokens list adds who asks, as it
shows owners every token and others their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api import answer_cache
from hostpanel.api.base import ActorMixin
from hostpanel.api.serializers import CONTAINER_COLUMNS, REPLICA_SUMMARY_COLUMNS, ROLLOUT_COLUMNS
from hostpanel.audit.models import AuditLog
from hostpanel.deployments.models import App, Release, Replica, Rollout
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.secrets.models import Secret
from hostpanel.tenants.access import has_role
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant
from hostpanel.volumes.models import Volume


def _columns(model: type[Model], names: Iterable[str]) -> set[str]:
    """The columns of ``model`` behind serializer column paths (``host__name``: ``host_id``)."""
    return {model._meta.get_field(name.split("__")[0]).column for name in names}


def _table(model: type[Model]) -> str:
    return str(model._meta.db_table)


USERNAMES = {"id", "username"}  # a user's row as the lists show it: its name

# group -> table -> the columns shown or sorted by (None: the whole row).
GROUPS: dict[str, dict[str, Iterable[str] | None]] = {
    # apps, releases and their tenant whole; the replicas' and rollouts' columns the serializers
    # read; hosts' and creators' names
    "apps": {
        _table(App): None,
        _table(Release): None,
        _table(Tenant): None,
        _table(Replica): _columns(Replica, [*REPLICA_SUMMARY_COLUMNS, "app"]),
        _table(Rollout): _columns(Rollout, [*ROLLOUT_COLUMNS, "app"]),
        _table(Host): {"id", "name"},
        _table(get_user_model()): USERNAMES,
    },
    # a replica's columns the container serializer reads (its state, health and times change with
    # every agent report that changes them), its app's name, host's name and address, release
    "containers": {
        _table(Replica): _columns(Replica, [*CONTAINER_COLUMNS, "app"]),
        _table(App): {"id", "name", "tenant_id"},
        _table(Host): {"id", "name", "address"},
        _table(Release): {"id", "version"},
    },
    "images": {_table(Image): None},  # base images (every tenant's) and the tenant's own
    "volumes": {_table(Volume): None},
    # names and dates: a value's ciphertext is neither read nor shown
    "secrets": {_table(Secret): {field.column for field in Secret._meta.concrete_fields} - {"ciphertext"}},
    "members": {_table(Membership): None, _table(get_user_model()): USERNAMES},
    # tokens' names, prefixes, dates (the last use among them, moved at most once a minute per
    # token); their owners' names
    "tokens": {_table(ApiToken): None, _table(get_user_model()): USERNAMES},
    "audit": {_table(AuditLog): None},
}

WATCHED = answer_cache.WriteWatcher(GROUPS)


def install(connection: BaseDatabaseWrapper, **_: Any) -> None:
    """A ``connection_created`` receiver (hostpanel.api.apps): every process's connections watch
    the writes the kept answers show."""
    answer_cache.install(connection, WATCHED)


class KeptList(ActorMixin, mixins.ListModelMixin):
    """A tenant list answered from a kept answer while its group's generation stands."""

    kept_group: ClassVar[str]
    request: Request
    tenant: Tenant

    def kept_key(self) -> tuple[Any, ...]:
        """What picks the answer besides the group's generation."""
        return (self.kept_group, self.tenant.pk, self.request.build_absolute_uri())

    def kept_for(self, data: Any) -> float | None:
        """How long ``data`` stays true as time passes alone (None: while nothing is written)."""
        return None

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # the role was checked in initial(); the same answer while nothing it shows changed
        return answer_cache.answers.respond(
            self.kept_key(),
            lambda: super(KeptList, self).list(request, *args, **kwargs),
            self.kept_group,
            self.kept_for,
        )


class KeptTokenList(KeptList):
    """The tokens list: who asks picks the rows (owners see all, others their own), and a token's
    ``is_active`` turns false at its expiry with nothing written."""

    kept_group = "tokens"

    def kept_key(self) -> tuple[Any, ...]:
        sees_all = has_role(self.actor, self.tenant, Role.OWNER)
        return (*super().kept_key(), getattr(self.actor.user, "pk", None), sees_all)

    def kept_for(self, data: Any) -> float | None:
        rows = data.get("results", []) if isinstance(data, dict) else data
        now = timezone.now()
        left = [
            (expires - now).total_seconds()
            for row in rows
            if row.get("revoked_at") is None
            and row.get("expires_at")
            and (expires := parse_datetime(row["expires_at"])) is not None
            and expires > now
        ]
        return min(left) if left else None
