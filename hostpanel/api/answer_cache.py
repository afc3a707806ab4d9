"""Answers of the API kept while nothing they show has changed: the apps list (issue 16).

Building ``GET /api/v1/tenants/<slug>/apps/`` costs a worker several milliseconds of CPU
(four queries; some 70 serializer fields per app, a release among them), and most of the
time it answers what it answered a moment before. Each process keeps its last answers, keyed
by the tenant and the full URL, with the *generation* each was built at: one number in the
database (:class:`hostpanel.api.models.CacheGeneration`, the same for every process) that every
committed write to a table the list reads moves on.

Writes are seen where all SQL passes, whoever writes (a gunicorn worker answering a user or an
agent's report, daphne, ``watchhosts``, a shell, a raw cursor, ``QuerySet.update``): an execute
wrapper on every database connection (:func:`watch_writes`). A statement that is not a SELECT
and names a watched table moves the generation on once it is committed: at once in autocommit,
else when the transaction commits (a rolled-back one changed nothing).

A request reads the generation first (one small query), then reuses the answer built at that
generation or builds it and keeps it under the generation read *before* building. So an answer
kept under generation ``g`` shows every write whose move made ``g`` current or came before it;
a write committed later moves the generation on after its commit, and the answer is not used
again. What is left: a process that dies between a commit and its move; ``seconds`` bounds
that (an answer is rebuilt at the latest that long after it was built). Permissions are checked
before the cache is asked (the viewset's ``initial``); answers hold no one's role.

Inside a transaction (a test's, ``ATOMIC_REQUESTS``) nothing is read from or kept in the cache:
the connection may see writes that are not committed.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from rest_framework.response import Response

from hostpanel.api.models import CacheGeneration
from hostpanel.api.serializers import REPLICA_SUMMARY_COLUMNS, ROLLOUT_COLUMNS
from hostpanel.deployments.models import App, Release, Replica, Rollout
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant

clock = time.monotonic  # tests move it
ExecuteWrapper = Callable[..., Any]


def _table() -> str:
    return str(CacheGeneration._meta.db_table)


def read_generation(using: str = "default") -> int | None:
    """The current generation (None: its row is missing, then nothing is cached)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {connection.ops.quote_name(_table())} WHERE id = 1")
        row = cursor.fetchone()
    return int(row[0]) if row else None


def move_generation(using: str = "default") -> None:
    """Move the generation on (its row made anew, from a random value, if it went missing: a
    number some process may still hold answers under is never current again). Nothing to move
    before the table is migrated (a fresh database's first migrations write watched tables)."""
    connection = connections[using]
    table = connection.ops.quote_name(_table())
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET value = value + 1 WHERE id = 1")
            if cursor.rowcount:
                return
            try:
                with transaction.atomic(using=using):
                    cursor.execute(
                        f"INSERT INTO {table} (id, value) VALUES (1, %s)", [secrets.randbelow(2**62)]
                    )
            except IntegrityError:  # made meanwhile by another process: move that one
                cursor.execute(f"UPDATE {table} SET value = value + 1 WHERE id = 1")
    except DatabaseError:
        if _table() in connection.introspection.table_names():
            raise
        # not migrated yet: no answer was kept either


_TARGET = re.compile(r'\s*(UPDATE|DELETE\s+FROM|INSERT\s+(?:OR\s+\w+\s+)?INTO)\s+"?(\w+)"?', re.I)


_WHERE = re.compile(r"\sWHERE\s", re.I)


def _where(sql: str, start: int) -> int:
    """Where the WHERE of an UPDATE begins (after the columns it sets): its first WHERE outside
    parentheses (a subquery's come inside them); with a quoted literal, whose parentheses may
    not pair, its last WHERE (the columns it sets all come before it); else the end."""
    ends = [m.start() for m in _WHERE.finditer(sql, start)]
    if "'" in sql:
        return ends[-1] if ends else len(sql)
    return next((end for end in ends if sql.count("(", start, end) == sql.count(")", start, end)), len(sql))


def _changed_nothing(sql: Any, rowcount: int) -> bool:
    """Whether ``sql``, an UPDATE or DELETE that counted no row, changed nothing. Not an INSERT
    nor a statement with RETURNING: they count their rows as they are read (none yet)."""
    if rowcount != 0 or not isinstance(sql, str) or "RETURNING" in sql.upper():
        return False
    found = _TARGET.match(sql)
    return found is not None and found.group(1)[0].upper() in "UD"


class WriteWatcher:
    """An execute wrapper moving the generation on after each committed write to ``tables``.

    ``tables`` maps a table to the columns the answers show of it (None: all of them): an
    UPDATE of that table that names none of them (an agent's heartbeat, a health check's time)
    changes no answer. An UPDATE or DELETE that changed no row changed nothing either.
    """

    def __init__(self, tables: dict[str, Iterable[str] | None]) -> None:
        self.tables = {
            table: None if columns is None else re.compile(rf"\b(?:{'|'.join(sorted(columns))})\b")
            for table, columns in tables.items()
        }

    def writes(self, sql: str) -> bool:
        """Whether ``sql`` may change what the answers show: an INSERT, DELETE or UPDATE of a
        watched table (an UPDATE naming a column shown), or anything else but a SELECT that
        names one (a schema change, a driver's composed statement)."""
        if not isinstance(sql, str):
            return True
        found = _TARGET.match(sql)
        if found is None:
            return sql.lstrip()[:6].upper() != "SELECT" and any(table in sql for table in self.tables)
        verb, table = found.group(1)[0].upper(), found.group(2)
        if table not in self.tables:
            return False  # it writes another table
        columns = self.tables[table]
        if verb != "U" or columns is None:
            return True
        return columns.search(sql, found.end(), _where(sql, found.end())) is not None

    def __call__(self, execute: ExecuteWrapper, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if self.writes(sql) and not _changed_nothing(sql, context["cursor"].rowcount):
            connection: BaseDatabaseWrapper = context["connection"]
            if not connection.in_atomic_block:
                move_generation(connection.alias)  # autocommit: the statement is committed
            elif not any(isinstance(func, _Move) for _, func, _ in connection.run_on_commit):
                # once per transaction (a savepoint's rollback drops it only if it was added there)
                transaction.on_commit(_Move(connection.alias), using=connection.alias)
        return result


class _Move:
    """``move_generation(using)`` as an on-commit callback the watcher can recognise."""

    def __init__(self, using: str) -> None:
        self.using = using

    def __call__(self) -> None:
        move_generation(self.using)


def _columns(model: type[Model], names: Iterable[str]) -> set[str]:
    """The columns of ``model`` behind serializer column paths (``host__name``: ``host_id``)."""
    return {model._meta.get_field(name.split("__")[0]).column for name in names}


# Every table the apps list reads and the columns it shows or sorts by (test_answer_cache.py
# checks them against its SQL): apps, releases and their tenant whole; the replicas' and rollouts'
# columns the serializers read; hosts' and creators' names.
WATCHED = WriteWatcher(
    {
        App._meta.db_table: None,
        Release._meta.db_table: None,
        Tenant._meta.db_table: None,
        Replica._meta.db_table: _columns(Replica, [*REPLICA_SUMMARY_COLUMNS, "app"]),
        Rollout._meta.db_table: _columns(Rollout, [*ROLLOUT_COLUMNS, "app"]),
        Host._meta.db_table: {"id", "name"},
        get_user_model()._meta.db_table: {"id", "username"},
    }
)


def install(connection: BaseDatabaseWrapper, watcher: WriteWatcher = WATCHED, **_: Any) -> None:
    """Wrap ``connection``'s statements with ``watcher`` (once, however often it reconnects);
    a ``connection_created`` receiver (hostpanel.api.apps), so every process's connections are."""
    if watcher not in connection.execute_wrappers:
        connection.execute_wrappers.append(watcher)


def _detached(data: Any) -> Any:
    """``data`` without the serializers DRF's ReturnDict and ReturnList hold (and, through them,
    the request and the rows): plain dicts and lists, the same values."""
    if isinstance(data, dict):
        return {key: _detached(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_detached(value) for value in data]
    return data


def _rows(data: Any) -> int:
    """The rows of an answer: a page's results, a list's items (1: anything else)."""
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return len(data["results"])
    return len(data) if isinstance(data, list) else 1


@dataclass(frozen=True)
class _Answer:
    generation: int
    until: float
    data: Any


class AnswerCache:
    """The last answers of this process, each used while the generation it was built at is
    current, for ``HOSTPANEL_API_CACHE_SECONDS`` at most (0: off)."""

    # What a process may hold, whatever URLs its clients make up: 128 answers of 50 rows (the
    # default page) at most, a few tens of megabytes; a longer page is built every time.
    MAX_ENTRIES = 128
    MAX_ROWS = 50

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], _Answer] = {}
        self._lock = threading.Lock()

    def respond(
        self, key: tuple[Any, ...], build: Callable[[], Response], using: str = "default"
    ) -> Response:
        """The answer kept under ``key`` if still current, else ``build()`` (a 200 is kept)."""
        seconds = settings.HOSTPANEL_API_CACHE_SECONDS
        if seconds <= 0 or connections[using].in_atomic_block:
            return build()
        generation = read_generation(using)
        if generation is None:
            return build()
        now = clock()
        kept = self._entries.get(key)
        if kept is not None and kept.generation == generation and kept.until > now:
            return Response(kept.data)
        response = build()
        if response.status_code == 200 and _rows(response.data) <= self.MAX_ROWS:
            with self._lock:
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries = {k: v for k, v in self._entries.items() if v.until > now}
                    if len(self._entries) >= self.MAX_ENTRIES:
                        self._entries.clear()
                self._entries[key] = _Answer(generation, now + seconds, _detached(response.data))
        return response

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


answers = AnswerCache()
