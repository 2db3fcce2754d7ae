"""Console as an app: only so Django finds its management commands (no models)."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "mistersmith.console"
    label = "console"
