"""The API's paginator answers as Django's does, with one query less when a page is not full."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.paginator import InvalidPage
from django.core.paginator import Paginator as DjangoPaginator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from hostpanel.api.pagination import Paginator
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import TenantFactory

NUMBERS: list[Any] = [1, 2, 3, 4, 5, "1", "2", "3", 2.0, 2.5, 0, -1, "0", "x", "", None, "last"]


def answer(paginator: DjangoPaginator, number: Any) -> tuple[Any, ...]:
    """What a page request tells: the rows, count, pages and neighbours, or the refusal."""
    try:
        page = paginator.page(paginator.num_pages if number == "last" else number)
    except InvalidPage as exc:
        return (type(exc), str(exc))
    rows = [t.slug for t in page]
    return (rows, paginator.count, paginator.num_pages, page.has_next(), page.has_previous(), page.number)


@pytest.mark.parametrize("rows", [0, 1, 4, 5, 6, 10, 11])
@pytest.mark.parametrize("per_page", [1, 5])
def test_every_page_answers_as_djangos(db: None, rows: int, per_page: int) -> None:
    for i in range(rows):
        TenantFactory(slug=f"t{i:02d}")
    tenants = Tenant.objects.order_by("slug")
    for number in NUMBERS:
        ours = answer(Paginator(tenants, per_page), number)
        assert ours == answer(DjangoPaginator(tenants, per_page), number), (rows, per_page, number)


def test_a_page_that_is_not_full_costs_no_count(db: None) -> None:
    for i in range(7):
        TenantFactory(slug=f"t{i}")
    tenants = Tenant.objects.order_by("slug")
    with CaptureQueriesContext(connection) as last_page:
        page = Paginator(tenants, 5).page(2)
    assert [t.slug for t in page] == ["t5", "t6"] and page.paginator.count == 7
    assert len(last_page) == 1
    with CaptureQueriesContext(connection) as full_page:
        page = Paginator(tenants, 5).page(1)
    assert len(page) == 5 and page.paginator.count == 7 and page.has_next()
    assert len(full_page) == 2  # the rows, then the count: a full page may be the last or not


def test_the_api_counts_and_links_as_before(owner_token: tuple[Any, APIClient]) -> None:
    tenant, client = owner_token
    for i in range(5):
        client.post(f"/api/v1/tenants/{tenant.slug}/secrets/", {"name": f"k{i}", "value": "v"}, format="json")
    url = f"/api/v1/tenants/{tenant.slug}/secrets/"
    first = client.get(url, {"page_size": 2}).json()
    assert first["count"] == 5 and first["previous"] is None and "page=2" in first["next"]
    last = client.get(url, {"page_size": 2, "page": 3}).json()
    assert last["count"] == 5 and last["next"] is None and [s["name"] for s in last["results"]] == ["k4"]
    assert client.get(url, {"page_size": 2, "page": "last"}).json()["results"] == last["results"]
    beyond = client.get(url, {"page_size": 2, "page": 4})
    assert beyond.status_code == 404
    assert beyond.json()["error"]["message"] == "Invalid page."
    assert client.get(url, {"page": "x"}).status_code == 404
    empty = client.get(f"/api/v1/tenants/{tenant.slug}/volumes/").json()
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}
