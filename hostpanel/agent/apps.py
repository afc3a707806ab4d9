from django.apps import AppConfig


class AgentConfig(AppConfig):
    """The host agent: its Celery tasks and ``manage.py hostagent`` (no models of its own)."""

    name = "hostpanel.agent"
    label = "agent"
    verbose_name = "Host agent"
