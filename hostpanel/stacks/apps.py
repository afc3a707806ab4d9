from django.apps import AppConfig


class StacksConfig(AppConfig):
    """Compose files deployed as stacks of apps (one app per service)."""

    name = "hostpanel.stacks"
    label = "stacks"
    verbose_name = "Stacks"
    default_auto_field = "django.db.models.BigAutoField"
