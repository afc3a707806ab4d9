from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ApiConfig(AppConfig):
    """The REST API: DRF routers, authentication and the OpenAPI schema."""

    name = "hostpanel.api"
    label = "api"
    verbose_name = "API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.api import kept_lists, schema  # noqa: F401  (schema registers its extensions)

        # every database connection of every process watches the writes the kept answers show
        connection_created.connect(kept_lists.install, dispatch_uid="hostpanel.api.answer_cache")
