"""Helpers of the kept-answer tests (test_answer_cache.py, test_kept_lists.py): a GET's JSON and
query count, the answer built with the cache off, and the tables and columns a list's SQL reads."""

from __future__ import annotations

import re
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
