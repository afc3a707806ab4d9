from django.apps import AppConfig


class StacksConfig(AppConfig):
    """Compose files deployed as stacks of apps (one app per service)."""

    name = "hostpanel.stacks"
    label = "stacks"
    verbose_name = "Stacks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.hosts import signals
        from hostpanel.stacks.services import advance_on_host_checks

        # the panel's periodic host checks advance deploying stacks (agents without the database
        # cannot run the advance task; `manage.py watchhosts` runs on the panel)
        signals.checked.connect(advance_on_host_checks, dispatch_uid="stacks-advance-on-host-checks")
