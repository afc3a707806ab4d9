"""Page-number pagination with a client-chosen page size (at most 1000)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger
from django.core.paginator import Paginator as DjangoPaginator
from rest_framework.pagination import PageNumberPagination


class Paginator(DjangoPaginator):
    """Django's paginator, reading the page before the count: a page that is not full tells the
    count itself (the rows before it and its own), so most lists cost one query less.

    A full page, or none past the first, asks the database as Django's does (same answers, same
    errors); so does a paginator that counted already (``?page=last``) or keeps orphans.
    """

    def page(self, number: Any) -> Page:
        if "count" in self.__dict__ or self.orphans:
            return super().page(number)
        number = self._whole_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page])
        if not rows and bottom:
            return super().page(number)  # past the end: counts, and refuses the number
        if len(rows) < self.per_page:
            self.count = bottom + len(rows)  # a cached_property: this is the count from now on
        else:
            self.validate_number(number)  # counts (a full page may be the last)
        return self._get_page(rows, number, self)

    def _whole_number(self, number: Any) -> int:
        """``number`` as a page number of at least 1, refused as Django's validate_number does."""
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number


class Pagination(PageNumberPagination):
    django_paginator_class = Paginator
    page_size_query_param = "page_size"
    max_page_size = 1000
