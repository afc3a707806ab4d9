"""hostpanel.api's one table: the generation the API's cached answers are checked against.

API tokens live in hostpanel.tenants (they belong to a tenant).
"""

from __future__ import annotations

from django.db import models


class CacheGeneration(models.Model):
    """One row (id 1) whose ``value`` every committed write to a table the apps list reads moves
    on, whatever process writes it (hostpanel/api/answer_cache.py). Missing row: no caching."""

    value = models.BigIntegerField()

    def __str__(self) -> str:
        return f"generation {self.value}"
