from django.apps import AppConfig


class HostsConfig(AppConfig):
    """Hosts, heartbeats, capacity, the scheduler and the reconcile tasks."""

    name = "hostpanel.hosts"
    label = "hosts"
    verbose_name = "Hosts"
    default_auto_field = "django.db.models.BigAutoField"
