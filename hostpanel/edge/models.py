"""The routing table the panel last published (one row)."""

from __future__ import annotations

from django.db import models


class PublishedRoutes(models.Model):
    """The last routing table sent to the host agents, with its generation (only ever grows).

    One row (pk 1). ``table`` is :meth:`hostpanel.edge.routes.Routes.to_json`; ``digest`` of
    its content decides whether a rebuilt table is news worth a new generation.
    """

    generation = models.PositiveBigIntegerField(default=0)
    table = models.JSONField(default=dict)
    digest = models.CharField(max_length=64, blank=True)
    published_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "published routes"

    def __str__(self) -> str:
        return f"routes generation {self.generation}"
