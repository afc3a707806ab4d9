from django.apps import AppConfig


class LogstreamConfig(AppConfig):
    name = "hostpanel.logstream"
    label = "logstream"
    verbose_name = "Live logs"

    def ready(self) -> None:
        from hostpanel.logstream import access  # noqa: F401  (registers the "container" kind)
