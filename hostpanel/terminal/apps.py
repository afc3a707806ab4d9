from django.apps import AppConfig


class TerminalConfig(AppConfig):
    name = "hostpanel.terminal"
    label = "terminal"
    verbose_name = "Terminal"
