"""The Celery app: broker from REDIS_URL (via settings), JSON only, tasks autodiscovered.

Host agents run ``celery -A hostpanel worker -Q host.<name>`` (DESIGN.md).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")

# The agent's task modules beside hostpanel/agent/tasks.py (autodiscovery finds only tasks.py).
app = Celery("hostpanel", include=["hostpanel.agent.build_tasks", "hostpanel.agent.edge_tasks"])
# Every CELERY_* Django setting (broker URL, serializers) configures the app.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
