"""Helpers of the kept-answer tests (test_answer_cache.py, test_kept_lists.py): a GET's JSON and
query count, the answer built with the cache off, and the tables and columns a list's SQL reads."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

committing = pytest.mark.django_db(transaction=True)  # inside a test's transaction nothing is kept

TABLE = re.compile(r'\b(?:FROM|JOIN)\s+"?(\w+)"?', re.I)
COLUMN = re.compile(r'"(\w+)"\."(\w+)"')


def get(client: APIClient, url: str) -> tuple[Any, int]:
    """The JSON of a GET of ``url`` (a 200) and the number of queries it took."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return response.json(), len(captured.captured_queries)


def built(client: APIClient, url: str, settings: Any) -> Any:
    """The answer built now, the cache off."""
    seconds = settings.HOSTPANEL_API_CACHE_SECONDS
    settings.HOSTPANEL_API_CACHE_SECONDS = 0
    try:
        return get(client, url)[0]
    finally:
        settings.HOSTPANEL_API_CACHE_SECONDS = seconds


def listing_sql(client: APIClient, url: str) -> list[str]:
    """The SQL a GET of ``url`` runs for the list itself (not the token's authentication)."""
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in captured.captured_queries if '"tenants_apitoken"."digest" =' not in q["sql"]]


def assert_seen_at_once(client: APIClient, url: str, write: Callable[[], None], settings: Any) -> None:
    """``url``'s answer is kept, then ``write`` commits and the next answer is the one built anew."""
    before, _ = get(client, url)
    assert get(client, url) == (before, 2)  # kept: the token, the generation
    write()
    after, queries = get(client, url)
    assert after != before and queries > 2  # a stale answer fails here
    assert after == built(client, url, settings)


def assert_watched(
    listing: list[str], watched: dict[str, re.Pattern[str] | None]
) -> tuple[set[str], set[tuple[str, str]]]:
    """Every table ``listing`` reads is in ``watched``, and every column of it read is shown there
    (a user's whole row is read for its name alone: its watched columns are its name). The tables
    and the (table, column) pairs read."""
    read = {table for sql in listing for table in TABLE.findall(sql)}
    assert read <= set(watched), listing
    columns = {pair for sql in listing for pair in COLUMN.findall(sql) if pair[0] in watched}
    assert columns, listing
    if "auth_user" in read:
        assert watched["auth_user"] is not None and watched["auth_user"].fullmatch("username")
    for table, column in {c for c in columns if c[0] != "auth_user"}:
        shown = watched[table]
        assert shown is None or shown.fullmatch(column), (table, column)
    return read, columns
