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

        # the panel's periodic host checks (`manage.py watchhosts`) advance deploying stacks; host
        # agents hold no database and take no part in it
        signals.checked.connect(advance_on_host_checks, dispatch_uid="stacks-advance-on-host-checks")
