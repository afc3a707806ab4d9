"""``{% rollout_progress app %}``: the app's rolling deploy, live on the app page (rollout.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils import timezone

from hostpanel.deployments import rotation
from hostpanel.deployments.models import App, Rollout

register = template.Library()

# A finished roll stays on the page this long (a failed one until the next change).
SHOWN_AFTER_SUCCESS = timedelta(minutes=2)


@register.inclusion_tag("deployments/_rollout.html")
def rollout_progress(app: App) -> dict[str, Any]:
    """The latest roll of ``app``: rolling (with how many new replicas serve), failed, or just done."""
    latest = app.rollouts.select_related("release", "previous").first()
    if latest is None or (
        latest.state == Rollout.State.SUCCEEDED
        and latest.finished_at is not None
        and timezone.now() - latest.finished_at > SHOWN_AFTER_SUCCESS
    ):
        return {"rollout": None}
    serving = set(rotation.serving_ids(app))
    new = [r for r in latest.replicas.filter(drain_until__isnull=True) if r.pk in serving]
    target = latest.release.replicas
    return {
        "rollout": latest,
        "ready": len(new),
        "target": target,
        "current": app.current_release,
    }
