"""hostpanel.api's one table: the generations the API's kept answers are checked against.

API tokens live in hostpanel.tenants (they belong to a tenant).
"""

from __future__ import annotations

from django.db import models


class CacheGeneration(models.Model):
    """A row per group of lists (``name``: apps, audit, ...) whose ``value`` every committed write
    to a table those lists read moves on, whatever process writes it (hostpanel/api/answer_cache.py;
    the groups: hostpanel/api/kept_lists.py). A missing row: that group's answers are not kept
    until a write makes it anew."""

    name = models.CharField(max_length=40, unique=True)
    value = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.name} generation {self.value}"
