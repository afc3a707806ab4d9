"""Answers of the API kept while nothing they show has changed: the tenants' lists (issue 16).

Building a list such as ``GET /api/v1/tenants/<slug>/apps/`` costs a worker milliseconds of CPU
(queries, then the serializers' fields per row), and most of the time it answers what it
answered a moment before. Each process keeps its last answers, keyed by the list, the tenant
and the full URL (and what else picks the rows: hostpanel/api/kept_lists.py), with the
*generation* of the list's *group* each was built at: one number per group in the database
(:class:`hostpanel.api.models.CacheGeneration`, a row per group, the same for every process)
that every committed write to a table the group's list reads moves on. A group's number moves
only with its own tables (and shown columns): an audit entry, written on every action, moves
the audit list's generation, not the apps list's.

Writes are seen where all SQL passes, whoever writes (a gunicorn worker answering a user or an
agent's report, daphne, ``watchhosts``, a shell, a raw cursor, ``QuerySet.update``): an execute
wrapper on every database connection (:class:`WriteWatcher`). A statement that is not a SELECT
and names a watched table moves the generations of the groups that read it once it is
committed: at once in autocommit, else when the transaction commits (once per transaction, in
one statement for all its groups; a rolled-back one changed nothing).

A request reads its group's generation first (one small query), then reuses the answer built
at that generation or builds it and keeps it under the generation read *before* building. So an
answer kept under generation ``g`` shows every write whose move made ``g`` current or came
before it; a write committed later moves the generation on after its commit, and the answer is
not used again. What is left: a process that dies between a commit and its move; ``seconds``
bounds that (an answer is rebuilt at the latest that long after it was built; sooner when its
list says it turns false sooner, as a token's expiry does). Permissions are checked before the
cache is asked (the viewset's ``initial``); answers hold no one's role.

Inside a transaction (a test's, ``ATOMIC_REQUESTS``) nothing is read from or kept in the cache:
the connection may see writes that are not committed.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from rest_framework.response import Response

from hostpanel.api.models import CacheGeneration

clock = time.monotonic  # tests move it
ExecuteWrapper = Callable[..., Any]


def _table() -> str:
    return str(CacheGeneration._meta.db_table)


def read_generation(group: str, using: str = "default") -> int | None:
    """The current generation of ``group`` (None: its row is missing, then nothing is kept)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {connection.ops.quote_name(_table())} WHERE name = %s", [group])
        row = cursor.fetchone()
    return int(row[0]) if row else None


def move_generations(groups: Collection[str], using: str = "default") -> None:
    """Move the generations of ``groups`` on, in one statement (a row made anew, from a random
    value, where one went missing: a number some process may still hold answers under is never
    current again). Nothing to move before the table is migrated (a fresh database's first
    migrations write watched tables)."""
    if not groups:
        return
    names = sorted(groups)
    connection = connections[using]
    table = connection.ops.quote_name(_table())
    marks = ", ".join(["%s"] * len(names))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET value = value + 1 WHERE name IN ({marks})", names)
            if cursor.rowcount == len(names):
                return
            cursor.execute(f"SELECT name FROM {table} WHERE name IN ({marks})", names)
            present = {row[0] for row in cursor.fetchall()}
            for name in names:
                if name not in present:
                    _make(cursor, table, name)
    except DatabaseError:
        if _table() in connection.introspection.table_names():
            raise
        # not migrated yet: no answer was kept either


def _make(cursor: Any, table: str, name: str) -> None:
    """Make ``name``'s missing row from a random value (or move it: made meanwhile elsewhere).
    One statement, no transaction of its own: in autocommit, the statement that moved it may
    still be read (an INSERT ... RETURNING), and SQLite commits nothing while one is."""
    cursor.execute(
        f"INSERT INTO {table} (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
        [name, secrets.randbelow(2**62)],
    )
    if not cursor.rowcount:  # made meanwhile by another process: move that one
        cursor.execute(f"UPDATE {table} SET value = value + 1 WHERE name = %s", [name])


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


Watched = Mapping[str, Mapping[str, Iterable[str] | None]]


class WriteWatcher:
    """An execute wrapper moving generations on after each committed write to their tables.

    ``groups`` maps a group to the tables its list reads, each to the columns it shows (None:
    all of them): an UPDATE of that table that names none of them (an agent's heartbeat, a
    health check's time) changes none of the group's answers. An UPDATE or DELETE that changed
    no row changed nothing either.
    """

    def __init__(self, groups: Watched) -> None:
        self.groups = {
            group: {
                table: None if columns is None else re.compile(rf"\b(?:{'|'.join(sorted(columns))})\b")
                for table, columns in tables.items()
            }
            for group, tables in groups.items()
        }
        self.tables: dict[str, list[tuple[str, re.Pattern[str] | None]]] = {}
        for group, tables in self.groups.items():
            for table, shown in tables.items():
                self.tables.setdefault(table, []).append((group, shown))

    def moved(self, sql: Any) -> frozenset[str]:
        """The groups whose answers ``sql`` may change: those reading the table an INSERT,
        DELETE or UPDATE writes (for an UPDATE, naming a column they show), or any other
        statement but a SELECT names (a schema change, a driver's composed statement)."""
        if not isinstance(sql, str):
            return frozenset(self.groups)
        found = _TARGET.match(sql)
        if found is None:
            if sql.lstrip()[:6].upper() == "SELECT":
                return frozenset()
            return frozenset(
                group for table, readers in self.tables.items() if table in sql for group, _ in readers
            )
        readers = self.tables.get(found.group(2))
        if not readers:
            return frozenset()  # it writes another table
        if found.group(1)[0].upper() != "U":
            return frozenset(group for group, _ in readers)
        where = _where(sql, found.end())
        return frozenset(
            group for group, shown in readers if shown is None or shown.search(sql, found.end(), where)
        )

    def __call__(self, execute: ExecuteWrapper, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        groups = self.moved(sql)
        if groups and not _changed_nothing(sql, context["cursor"].rowcount):
            connection: BaseDatabaseWrapper = context["connection"]
            if not connection.in_atomic_block:
                move_generations(groups, connection.alias)  # autocommit: the statement is committed
            else:
                # once per transaction: a savepoint's rollback drops the callback only if it was
                # added there, when every write it names was made there too (else it moves a
                # group that need not move: an answer rebuilt, never a stale one kept)
                pending = next((f for _, f, _ in connection.run_on_commit if isinstance(f, _Move)), None)
                if pending is None:
                    transaction.on_commit(_Move(connection.alias, groups), using=connection.alias)
                else:
                    pending.groups |= groups
        return result


class _Move:
    """``move_generations(groups, using)`` as an on-commit callback the watcher recognises."""

    def __init__(self, using: str, groups: Collection[str]) -> None:
        self.using = using
        self.groups = set(groups)

    def __call__(self) -> None:
        move_generations(self.groups, self.using)


def install(connection: BaseDatabaseWrapper, watcher: WriteWatcher, **_: Any) -> None:
    """Wrap ``connection``'s statements with ``watcher`` (once, however often it reconnects)."""
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

    # What a process may hold, whatever URLs its clients make up: 512 answers (some tenants'
    # lists, each a few pages) of 50 rows (the default page) at most, a few tens of megabytes;
    # a longer page is built every time.
    MAX_ENTRIES = 512
    MAX_ROWS = 50

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], _Answer] = {}
        self._lock = threading.Lock()

    def respond(
        self,
        key: tuple[Any, ...],
        build: Callable[[], Response],
        group: str,
        valid_for: Callable[[Any], float | None] | None = None,
        using: str = "default",
    ) -> Response:
        """The answer kept under ``key`` if ``group``'s generation is still the one it was built
        at, else ``build()`` (a 200 is kept: for ``valid_for(data)`` seconds at most when that
        says the answer turns false by itself, as time passes)."""
        seconds = settings.HOSTPANEL_API_CACHE_SECONDS
        if seconds <= 0 or connections[using].in_atomic_block:
            return build()
        generation = read_generation(group, using)
        if generation is None:
            return build()
        now = clock()
        kept = self._entries.get(key)
        if kept is not None and kept.generation == generation and kept.until > now:
            return Response(kept.data)
        response = build()
        if response.status_code == 200 and _rows(response.data) <= self.MAX_ROWS:
            data = _detached(response.data)
            bound = valid_for(data) if valid_for is not None else None
            lasts = seconds if bound is None else min(seconds, bound)
            if lasts > 0:
                self._keep(key, _Answer(generation, now + lasts, data), now)
        return response

    def _keep(self, key: tuple[Any, ...], answer: _Answer, now: float) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v.until > now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = answer

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


answers = AnswerCache()
